"""The prediction log: every appended row reaches disk, off the caller's thread."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from serving.prediction_log import (
    PredictionLog,
    PredictionRecord,
    explode_features,
    read_predictions,
)

FEATURES = ("item_ctr_28d", "user_ctr_28d")


def record(n: int, when: datetime | None = None, with_features: bool = True) -> PredictionRecord:
    candidates = np.array([10 + n, 20 + n, 30 + n])
    return PredictionRecord(
        request_id=f"r{n}",
        timestamp=when or datetime(2026, 11, 28, 12, tzinfo=UTC),
        user_id=n,
        device="mobile",
        region="north",
        query_category="books",
        candidates=candidates,
        scores=np.array([0.3, 0.1, 0.2]),
        k=2,
        model_name="ranker",
        model_version="3",
        served_by="model",
        latency_ms=1.5,
        cold_user=False,
        cold_items=[30 + n],
        feature_names=FEATURES if with_features else (),
        features=np.arange(6, dtype=float).reshape(3, 2) + n if with_features else None,
    )


def test_rows_appended_from_many_threads_are_all_written_on_close(tmp_path):
    log = PredictionLog(tmp_path, flush_seconds=0.05, flush_rows=37).start()

    def append(start: int) -> None:
        for n in range(start, start + 250):
            log.append(record(n))

    threads = [threading.Thread(target=append, args=(i * 250,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()

    rows = read_predictions(tmp_path)
    assert len(rows) == 1000
    assert set(rows["request_id"]) == {f"r{n}" for n in range(1000)}
    assert len(list(tmp_path.glob("date=2026-11-28/*.parquet"))) > 1  # flushed along the way


def test_a_row_round_trips_with_its_features_and_partition(tmp_path):
    midnight = datetime(2026, 11, 29, tzinfo=UTC)
    log = PredictionLog(tmp_path, flush_seconds=10).start()
    log.append(record(1, when=midnight - timedelta(seconds=1)))
    log.append(record(2, when=midnight, with_features=False))
    log.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["date=2026-11-28", "date=2026-11-29"]
    rows = read_predictions(tmp_path).set_index("request_id")
    first = rows.loc["r1"]
    assert list(first["candidates"]) == [11, 21, 31]
    assert list(first["cold_items"]) == [31]
    assert np.vstack(first["features"]).tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert rows.loc["r2", "features"] is None
    assert read_predictions(tmp_path, dates=["2026-11-29"])["request_id"].tolist() == ["r2"]


def test_explode_features_gives_a_row_per_candidate(tmp_path):
    log = PredictionLog(tmp_path, flush_seconds=10).start()
    log.append(record(1))
    log.append(record(2, with_features=False))
    log.close()

    exploded = explode_features(read_predictions(tmp_path))
    assert exploded.columns.tolist() == ["request_id", "item_id", "score", *FEATURES]
    assert exploded["item_id"].tolist() == [11, 21, 31]
    assert exploded["item_ctr_28d"].tolist() == [1.0, 3.0, 5.0]


def test_a_failed_write_is_retried_not_dropped(tmp_path):
    blocked = tmp_path / "predictions"
    blocked.write_text("a file where the folder should be")
    log = PredictionLog(blocked, flush_seconds=0.05).start()
    log.append(record(1))
    threading.Event().wait(0.3)  # a few failed flushes
    blocked.unlink()
    log.close()

    assert read_predictions(blocked)["request_id"].tolist() == ["r1"]


def test_reading_an_empty_log_gives_an_empty_frame_with_the_columns(tmp_path):
    rows = read_predictions(tmp_path)
    assert rows.empty and "served_by" in rows.columns


def test_flush_settings_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="flush_seconds and flush_rows must be > 0"):
        PredictionLog(tmp_path, flush_seconds=0)
