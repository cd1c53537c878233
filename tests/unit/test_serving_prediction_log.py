"""The prediction log: every appended row reaches disk, off the caller's thread."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ranklab.privacy import Pseudonymiser
from serving.prediction_log import (
    USER_PSEUDONYM,
    WAL_DIR,
    PredictionLog,
    PredictionRecord,
    compact_segment,
    encode,
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

    assert sorted(p.name for p in tmp_path.glob("date=*")) == ["date=2026-11-28", "date=2026-11-29"]
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


def test_a_failed_compaction_keeps_the_rows_in_the_wal_and_is_retried(tmp_path):
    blocked = tmp_path / "date=2026-11-28"
    blocked.write_text("a file where the partition folder should be")
    log = PredictionLog(tmp_path, flush_seconds=0.05).start()
    log.append(record(1))
    threading.Event().wait(0.3)  # a few failed compactions
    assert list((tmp_path / WAL_DIR).glob("*.wal")), "the row must still be in the WAL"
    assert log.pending == 1
    blocked.unlink()
    log.close()

    assert read_predictions(tmp_path)["request_id"].tolist() == ["r1"]
    assert log.pending == 0


def test_the_log_stores_a_keyed_pseudonym_never_the_user_id(tmp_path):
    key_a, key_b = Pseudonymiser(b"a" * 32), Pseudonymiser(b"b" * 32)
    for key, folder in ((key_a, "a"), (key_b, "b")):
        log = PredictionLog(tmp_path / folder, pseudonymiser=key).start()
        log.append(record(7))
        log.append(record(8))
        log.close()
    a, b = read_predictions(tmp_path / "a"), read_predictions(tmp_path / "b")

    assert "user_id" not in a.columns
    assert a[USER_PSEUDONYM].tolist() == [key_a(7), key_a(8)]
    assert not set(a[USER_PSEUDONYM]) & {7, 8}
    assert a[USER_PSEUDONYM].tolist() != b[USER_PSEUDONYM].tolist()  # the key matters


def test_rows_of_a_killed_process_are_compacted_by_the_next_one_exactly_once(tmp_path):
    """The WAL outlives its process: a child appends, then SIGKILLs itself without closing."""
    child = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_serving_prediction_log import record
        from ranklab.privacy import Pseudonymiser
        from serving.prediction_log import PredictionLog
        log = PredictionLog({str(tmp_path)!r}, flush_seconds=3600,
                            pseudonymiser=Pseudonymiser(b"k" * 32)).start()
        for n in range(500):
            log.append(record(n))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    died = subprocess.run([sys.executable, "-c", child], check=False)
    assert died.returncode == -signal.SIGKILL
    assert read_predictions(tmp_path).empty  # nothing compacted: all 500 are in its WAL

    survivor = PredictionLog(tmp_path, flush_seconds=3600).start()  # compacts at start
    survivor.close()

    rows = read_predictions(tmp_path)
    assert sorted(rows["request_id"]) == sorted(f"r{n}" for n in range(500))
    assert not list((tmp_path / WAL_DIR).glob("*.wal"))


def test_a_torn_last_record_is_dropped_and_the_rest_kept(tmp_path):
    wal = tmp_path / WAL_DIR
    wal.mkdir()
    frames = [encode(record(n), n) for n in range(3)]
    (wal / "wal-1-1-000001.wal").write_bytes(b"".join(frames) + frames[0][:-5])

    assert compact_segment(wal / "wal-1-1-000001.wal", tmp_path) == 3
    assert read_predictions(tmp_path)["request_id"].tolist() == ["r0", "r1", "r2"]


def test_compacting_a_segment_twice_writes_its_rows_once(tmp_path):
    """A compactor that dies after writing Parquet and before deleting the segment."""
    wal = tmp_path / WAL_DIR
    wal.mkdir()
    segment = wal / "wal-1-1-000001.wal"
    data = b"".join(encode(record(n), n) for n in range(4))
    segment.write_bytes(data)
    compact_segment(segment, tmp_path)
    segment.write_bytes(data)  # as if the delete never happened
    compact_segment(segment, tmp_path)

    assert sorted(read_predictions(tmp_path)["request_id"]) == ["r0", "r1", "r2", "r3"]


def test_a_live_writers_segment_is_not_taken_by_another_compactor(tmp_path):
    writer = PredictionLog(tmp_path, flush_seconds=3600).start()
    writer.append(record(1))
    other = PredictionLog(tmp_path, flush_seconds=3600)
    assert other.compact() == 0  # the writer still holds its active segment
    writer.close()
    assert read_predictions(tmp_path)["request_id"].tolist() == ["r1"]


def test_reading_an_empty_log_gives_an_empty_frame_with_the_columns(tmp_path):
    rows = read_predictions(tmp_path)
    assert rows.empty and "served_by" in rows.columns


def test_flush_settings_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="flush_seconds and flush_rows must be > 0"):
        PredictionLog(tmp_path, flush_seconds=0)
