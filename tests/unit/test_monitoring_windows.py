"""Windows, the candidate rows of logged requests, and per-search ranking quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.windows import (
    Window,
    candidate_rows,
    session_quality,
    windows_between,
    with_labels,
)
from serving.prediction_log import PredictionRecord, read_predictions, to_table

DAY = pd.Timestamp("2026-10-01", tz="UTC")


def _record(
    request_id: str, hour: int, scores: list[float], features: bool = True
) -> PredictionRecord:
    n = len(scores)
    return PredictionRecord(
        request_id=request_id,
        timestamp=(DAY + pd.Timedelta(hours=hour)).to_pydatetime(),
        user_id=1,
        device="mobile",
        region="north",
        query_category="books",
        candidates=np.arange(10, 10 + n, dtype=np.int64),
        scores=np.asarray(scores, dtype=float),
        k=n,
        model_name="ranker",
        model_version="3",
        served_by="model" if features else "fallback:online_store_timeout",
        latency_ms=1.0,
        cold_user=False,
        cold_items=[],
        feature_names=("a", "b") if features else (),
        features=np.arange(2 * n, dtype=float).reshape(n, 2) if features else None,
    )


@pytest.fixture
def predictions(tmp_path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    records = [_record("r1", 1, [0.1, 0.9, 0.5]), _record("r2", 30, [2.0, 2.0], features=False)]
    folder = tmp_path / "date=2026-10-01"
    folder.mkdir()
    pq.write_table(to_table(records), folder / "part.parquet")
    return read_predictions(tmp_path)


def test_candidate_rows_rank_scores_and_keep_requests_logged_without_features(predictions):
    rows = candidate_rows(predictions)
    assert rows["request_id"].tolist() == ["r1", "r1", "r1", "r2", "r2"]
    assert rows["item_id"].tolist() == [10, 11, 12, 10, 11]
    # best score shown first; a tie keeps the candidates' order, as serving's top_k does
    assert rows["position"].tolist() == [3, 1, 2, 1, 2]
    assert rows.loc[rows["request_id"] == "r1", "b"].tolist() == [1.0, 3.0, 5.0]
    assert rows.loc[rows["request_id"] == "r2", ["a", "b"]].isna().all().all()
    assert rows["served_by"].iloc[-1] == "fallback:online_store_timeout"


def test_candidate_rows_take_the_simulated_time_from_the_ledger(predictions):
    simulated = pd.DataFrame({"request_id": ["r1"], "ts": [DAY + pd.Timedelta(days=5)]})
    rows = candidate_rows(predictions, simulated)
    assert rows.loc[rows["request_id"] == "r1", "ts"].eq(DAY + pd.Timedelta(days=5)).all()
    assert rows.loc[rows["request_id"] == "r2", "ts"].eq(DAY + pd.Timedelta(hours=30)).all()


def test_an_empty_log_is_an_error():
    with pytest.raises(ValueError, match="no logged predictions"):
        candidate_rows(pd.DataFrame(columns=["request_id", "timestamp", "candidates"]))


def test_windows_cover_the_span_and_labels_complete_after_the_delay():
    windows = windows_between(DAY, DAY + pd.Timedelta(hours=60), hours=24)
    assert [(w.start.hour, (w.end - w.start).total_seconds() / 3600) for w in windows] == [
        (0, 24.0),
        (0, 24.0),
        (0, 12.0),
    ]
    assert windows[0].labels_complete_at == DAY + pd.Timedelta(hours=30)
    assert windows[0].name == "2026-10-01T0000"
    with pytest.raises(ValueError, match="is not before its end"):
        Window(DAY, DAY)
    with pytest.raises(ValueError, match="must be > 0 hours"):
        windows_between(DAY, DAY + pd.Timedelta(days=1), hours=0)


def test_session_quality_from_click_labels():
    rows = pd.DataFrame(
        {
            "request_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 12,
            "position": [1, 2, 3] * 2 + list(range(1, 13)),
            "label": [0, 2, 1] + [0, 0, 0] + [0] * 11 + [1],  # c: clicked at 12 only
            "device": ["mobile"] * 18,
        }
    )
    quality = session_quality(rows).set_index("request_id")
    assert quality.loc["a", "hit_rate@10"] == 1.0
    assert quality.loc["a", "mrr"] == pytest.approx(1 / 2)
    ideal = 2 + 1 / np.log2(3)
    assert quality.loc["a", "ndcg@10"] == pytest.approx((2 / np.log2(3) + 1 / 2) / ideal)
    assert quality.loc["b", ["hit_rate@10", "mrr"]].tolist() == [0.0, 0.0]
    assert np.isnan(quality.loc["b", "ndcg@10"])  # no click: says nothing about the order
    assert quality.loc["c", "hit_rate@10"] == 0.0  # the click came below the top 10
    assert quality.loc["c", "device"] == "mobile"


def test_with_labels_keeps_only_labelled_requests(predictions):
    rows = candidate_rows(predictions)
    labels = pd.DataFrame(
        {
            "request_id": ["r1"] * 3,
            "item_id": [10, 11, 12],
            "clicked": [0, 1, 0],
            "purchased": [0, 0, 0],
            "label": [0, 1, 0],
        }
    )
    labelled = with_labels(rows, labels)
    assert labelled["request_id"].unique().tolist() == ["r1"]
    assert labelled.set_index("item_id")["label"].to_dict() == {10: 0, 11: 1, 12: 0}
