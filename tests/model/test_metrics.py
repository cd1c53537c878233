"""Ranking metrics against hand-computed cases and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from models.metrics import METRICS, per_session_metrics, resolve_no_relevant, summarise
from ranklab.schema import LABEL, SESSION_ID


def one_session(gains: list[float], session: str = "s") -> pd.DataFrame:
    return pd.DataFrame({SESSION_ID: session, LABEL: gains})


def test_hand_computed_session():
    frame = one_session([3, 2, 0, 1])
    scores = np.array([0.1, 0.2, 0.9, 0.3])  # shown order: gains 0, 1, 2, 3
    row = per_session_metrics(frame, scores, LABEL, recall_k=2).iloc[0]

    dcg = 0 / np.log2(2) + 1 / np.log2(3) + 2 / np.log2(4) + 3 / np.log2(5)
    ideal = 3 / np.log2(2) + 2 / np.log2(3) + 1 / np.log2(4)
    assert row["ndcg@10"] == pytest.approx(dcg / ideal)
    assert row["ndcg@10"] == pytest.approx(2.92296 / 4.76186, abs=1e-5)  # 0.6138
    assert row["mrr"] == pytest.approx(0.5)  # first relevant item at rank 2
    assert row["recall@2"] == pytest.approx(1 / 3)  # one of three relevant items in the top 2


def test_cutoff_counts_only_the_top_k():
    frame = one_session([0, 0, 0, 0, 0, 1])
    scores = np.arange(6, 0, -1)  # the only relevant item is shown sixth
    row = per_session_metrics(frame, scores, LABEL).iloc[0]
    assert row["ndcg@5"] == 0.0
    assert row["ndcg@10"] == pytest.approx(1 / np.log2(7))


def test_ties_are_broken_by_row_order():
    frame = one_session([0, 1])
    assert per_session_metrics(frame, np.zeros(2), LABEL).iloc[0]["mrr"] == 0.5
    assert per_session_metrics(one_session([1, 0]), np.zeros(2), LABEL).iloc[0]["mrr"] == 1.0


def test_sessions_in_order_of_first_appearance():
    frame = pd.concat([one_session([1, 0], "b"), one_session([0, 1], "a")])
    result = per_session_metrics(frame, np.array([1.0, 0.0, 1.0, 0.0]), LABEL)
    assert result.index.tolist() == ["b", "a"]
    assert result.loc["b", "mrr"] == 1.0 and result.loc["a", "mrr"] == 0.5
    assert list(result.columns) == list(METRICS)


def test_matches_sklearn_ndcg_on_random_sessions():
    rng = np.random.default_rng(3)
    sizes = rng.integers(2, 40, size=300)
    session = np.repeat(np.arange(len(sizes)), sizes)
    gains = rng.integers(0, 5, size=len(session)).astype(float)
    gains[np.r_[0, np.cumsum(sizes)[:-1]]] = 1.0  # every session has a relevant item
    scores = rng.normal(size=len(session))
    frame = pd.DataFrame({SESSION_ID: session, LABEL: gains})

    ours = per_session_metrics(frame, scores, LABEL)
    for k in (5, 10):
        reference = [
            ndcg_score([gains[session == s]], [scores[session == s]], k=k)
            for s in range(len(sizes))
        ]
        np.testing.assert_allclose(ours[f"ndcg@{k}"].to_numpy(), reference, rtol=1e-12)


def test_session_without_relevant_items_follows_the_policy():
    frame = pd.concat([one_session([0, 0], "empty"), one_session([0, 1], "full")])
    per_session = per_session_metrics(frame, np.array([1.0, 0.0, 1.0, 0.0]), LABEL)
    assert per_session.loc["empty"].isna().all()

    assert resolve_no_relevant(per_session, "skip").index.tolist() == ["full"]
    assert resolve_no_relevant(per_session, "one").loc["empty"].eq(1.0).all()
    summary = summarise(per_session, "one")
    assert summary.loc["mrr", "mean"] == pytest.approx((1.0 + 0.5) / 2)
    assert summary.loc["mrr", "n_sessions"] == 2
    assert summary.loc["mrr", "n_without_relevant"] == 1
    assert summarise(per_session, "skip").loc["mrr", "mean"] == 0.5
    with pytest.raises(ValueError, match="no_relevant must be 'skip' or 'one'"):
        resolve_no_relevant(per_session, "zero")  # type: ignore[arg-type]


def test_bad_inputs_are_named():
    frame = one_session([1, 0, 2])
    with pytest.raises(ValueError, match=r"one score per row \(3\)"):
        per_session_metrics(frame, np.zeros(2), LABEL)
    with pytest.raises(KeyError, match="lacks column 'true_relevance'"):
        per_session_metrics(frame, np.zeros(3), "true_relevance")
    with pytest.raises(ValueError, match="scores contain NaN"):
        per_session_metrics(frame, np.array([0.0, np.nan, 1.0]), LABEL)
    with pytest.raises(ValueError, match="gain column 'label' has NaN"):
        per_session_metrics(one_session([1.0, np.nan]), np.zeros(2), LABEL)
