"""Ranking metrics per session, written out by hand (numpy and pandas only).

Every metric is computed per session first: sessions are the unit a user experiences,
and the unit the bootstrap in ``models/evaluation.py`` resamples.

- NDCG@k: DCG@k / ideal DCG@k with linear gain (gain = the label value, as scikit-learn's
  ``ndcg_score``) and a log2(rank + 1) discount.
- MRR: 1 / rank of the first relevant item (relevant = gain > 0).
- Recall@k: the share of a session's relevant items that appear in its top k.

A session with no relevant item has no ranking to get right: all its metrics are NaN,
and ``summarise`` / ``resolve_no_relevant`` apply the caller's policy for them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ranklab.schema import SESSION_ID

METRICS = ("ndcg@5", "ndcg@10", "mrr", "recall@10")
PRIMARY_METRIC = "ndcg@10"

NoRelevant = Literal["skip", "one"]


def per_session_metrics(
    frame: pd.DataFrame,
    scores: np.ndarray,
    gain_column: str,
    k_values: tuple[int, ...] = (5, 10),
    recall_k: int = 10,
) -> pd.DataFrame:
    """One row per session (in order of first appearance): ndcg@k for each k, mrr, recall@k.

    Ties in ``scores`` are broken by the original row order, so the result never depends
    on the sort algorithm.
    """
    gains, scores = _checked_inputs(frame, scores, gain_column)
    session_codes, session_ids = pd.factorize(frame[SESSION_ID], sort=False)
    n_sessions = len(session_ids)

    # Rank every row inside its session: by the model's score, and by the gain itself
    # (the ideal ranking). np.lexsort sorts by its last key first and is stable.
    model_order = np.lexsort((-scores, session_codes))
    ideal_order = np.lexsort((-gains, session_codes))
    model_rank = _rank_within_session(session_codes, model_order)  # 1-based
    ideal_rank = _rank_within_session(session_codes, ideal_order)
    discount = 1.0 / np.log2(model_rank + 1.0)
    ideal_discount = 1.0 / np.log2(ideal_rank + 1.0)

    def per_session_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(session_codes, weights=values, minlength=n_sessions)

    relevant = gains > 0
    n_relevant = per_session_sum(relevant.astype(float))
    has_relevant = n_relevant > 0

    columns: dict[str, np.ndarray] = {}
    for k in k_values:
        dcg = per_session_sum(gains * discount * (model_rank <= k))
        ideal_dcg = per_session_sum(gains * ideal_discount * (ideal_rank <= k))
        columns[f"ndcg@{k}"] = _where_relevant(has_relevant, dcg, ideal_dcg)

    # MRR: the smallest rank among relevant rows; non-relevant rows never win the minimum.
    first_relevant_rank = np.full(n_sessions, np.inf)
    np.minimum.at(first_relevant_rank, session_codes, np.where(relevant, model_rank, np.inf))
    columns["mrr"] = _where_relevant(has_relevant, np.ones(n_sessions), first_relevant_rank)

    relevant_in_top_k = per_session_sum((relevant & (model_rank <= recall_k)).astype(float))
    columns[f"recall@{recall_k}"] = _where_relevant(has_relevant, relevant_in_top_k, n_relevant)

    return pd.DataFrame(columns, index=pd.Index(session_ids, name=SESSION_ID))


def snips_dcg(frame: pd.DataFrame, scores: np.ndarray, gain_column: str, k: int = 10) -> pd.Series:
    """Per session with a positive gain: its DCG@k over the frame's mean gain mass.

    The counterfactual (debiased) metric for inverse-propensity-weighted click gains. Each
    click's weight corrects for where the old ranker showed it, but *per-session* NDCG
    divides that weight out again whenever a session has one click (most do): the session's
    own ideal DCG has the same weight. Normalising by one constant for the whole frame keeps
    it. The mean of the result is the self-normalised IPS estimate (SNIPS, Swaminathan and
    Joachims, 2015) of DCG@k with gain = attraction, sum(c w discount) / sum(c w): at most 1,
    reached when every session's clicked items are ranked first. Two models on the same logs
    share the denominator, so their paired difference is the difference of their IPS sums.
    Sessions without gain are left out (they add nothing to either sum).
    """
    gains, scores = _checked_inputs(frame, scores, gain_column)
    session_codes, session_ids = pd.factorize(frame[SESSION_ID], sort=False)
    model_rank = _rank_within_session(session_codes, np.lexsort((-scores, session_codes)))
    discount = np.where(model_rank <= k, 1.0 / np.log2(model_rank + 1.0), 0.0)
    n_sessions = len(session_ids)
    dcg = np.bincount(session_codes, weights=gains * discount, minlength=n_sessions)
    mass = np.bincount(session_codes, weights=gains, minlength=n_sessions)
    has_gain = mass > 0
    if not has_gain.any():
        raise ValueError(f"snips_dcg: no session has a positive {gain_column!r}")
    values = dcg[has_gain] / mass[has_gain].mean()
    return pd.Series(values, index=pd.Index(session_ids[has_gain], name=SESSION_ID))


def resolve_no_relevant(per_session: pd.DataFrame, no_relevant: NoRelevant) -> pd.DataFrame:
    """Apply the policy for sessions without a relevant item (their metrics are NaN).

    - ``"skip"``: drop them. For click labels, a session without a click says nothing
      about the ranking (the user may simply have left).
    - ``"one"``: count them as 1.0 (any order is ideal). This is how the published LETOR
      reference numbers (and LightGBM's evaluation) treat them.
    """
    if no_relevant == "skip":
        return per_session.dropna(how="all")
    if no_relevant == "one":
        return per_session.fillna(1.0)
    raise ValueError(f"no_relevant must be 'skip' or 'one', got {no_relevant!r}")


def summarise(per_session: pd.DataFrame, no_relevant: NoRelevant) -> pd.DataFrame:
    """Mean of each metric and the number of sessions behind it, one row per metric."""
    resolved = resolve_no_relevant(per_session, no_relevant)
    n_without_relevant = int(per_session.isna().all(axis=1).sum())
    return pd.DataFrame(
        {
            "mean": resolved.mean(),
            "n_sessions": len(resolved),
            "n_without_relevant": n_without_relevant,
        }
    ).rename_axis("metric")


# ---- helpers -------------------------------------------------------------------------------


def _checked_inputs(
    frame: pd.DataFrame, scores: np.ndarray, gain_column: str
) -> tuple[np.ndarray, np.ndarray]:
    for column in (SESSION_ID, gain_column):
        if column not in frame.columns:
            raise KeyError(f"per_session_metrics: frame lacks column {column!r}")
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (len(frame),):
        raise ValueError(
            f"per_session_metrics: expected one score per row ({len(frame)}), "
            f"got an array of shape {scores.shape}"
        )
    if not np.isfinite(scores).all():
        raise ValueError("per_session_metrics: scores contain NaN or infinite values")
    gains = frame[gain_column].to_numpy(dtype=float)
    if np.isnan(gains).any() or (gains < 0).any():
        raise ValueError(f"per_session_metrics: gain column {gain_column!r} has NaN or negatives")
    return gains, scores


def _rank_within_session(session_codes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """1-based rank of each row inside its session, given rows sorted by (session, key)."""
    sorted_codes = session_codes[order]
    # Index (in sorted order) where each row's session starts.
    is_start = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]
    start_index = np.maximum.accumulate(np.where(is_start, np.arange(len(order)), 0))
    rank = np.empty(len(order), dtype=float)
    rank[order] = np.arange(len(order)) - start_index + 1
    return rank


def _where_relevant(has_relevant: np.ndarray, numerator: np.ndarray, denominator: np.ndarray):
    """numerator / denominator for sessions with a relevant item, NaN for the others."""
    out = np.full(len(has_relevant), np.nan)
    np.divide(numerator, denominator, out=out, where=has_relevant)
    return out
