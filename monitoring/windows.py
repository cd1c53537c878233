"""Monitoring windows: which logged requests a window holds, their candidate rows, their labels.

A window is a half-open interval of (simulated) time. Its drift and data-quality reports can
run as soon as it closes; its ranking-quality report waits ``LABEL_DELAY`` more, until the
clicks of its last searches have arrived.

The prediction log holds one row per request; reports compare candidates, so
``candidate_rows`` turns each request into a row per candidate with the request's context,
its score, the position it was shown at and the features it was scored with. Unlike
``serving.prediction_log.explode_features`` it keeps requests logged without features (a
fallback that never read the store), with nulls: data quality has to see them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.events import LABEL_DELAY, REQUEST_ID, TS
from models.metrics import per_session_metrics
from ranklab import schema

SCORE = "score"
SERVED_BY = "served_by"
SERVED_BY_MODEL = "model"  # serving.schemas.SERVED_BY_MODEL: the champion answered
MODEL_VERSION = "model_version"
CONTEXT_COLUMNS = (schema.DEVICE, schema.REGION, schema.QUERY_CATEGORY)
QUALITY_K = 10  # the top of the list people look at: hit rate and NDCG are measured at 10
QUALITY_METRICS = ("hit_rate@10", "mrr", "ndcg@10")
_REQUEST_COLUMNS = (REQUEST_ID, TS, *CONTEXT_COLUMNS, SERVED_BY, MODEL_VERSION)


@dataclass(frozen=True)
class Window:
    """[start, end) of simulated time."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"window start {self.start} is not before its end {self.end}")

    @property
    def labels_complete_at(self) -> pd.Timestamp:
        """When the clicks of the window's last searches have all arrived."""
        return self.end + LABEL_DELAY

    @property
    def name(self) -> str:
        return f"{self.start:%Y-%m-%dT%H%M}"

    def holds(self, timestamps: pd.Series) -> pd.Series:
        return (timestamps >= self.start) & (timestamps < self.end)


def windows_between(start: pd.Timestamp, end: pd.Timestamp, hours: float = 24) -> list[Window]:
    """Consecutive windows of ``hours`` covering [start, end); the last one may be shorter."""
    if hours <= 0:
        raise ValueError(f"window length must be > 0 hours, got {hours}")
    step = pd.Timedelta(hours=hours)
    edges = list(pd.date_range(start, end, freq=step))
    if edges[-1] < end:
        edges.append(end)
    return [Window(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


# ---- the candidate rows of logged requests ----
def candidate_rows(predictions: pd.DataFrame, requests: pd.DataFrame | None = None) -> pd.DataFrame:
    """A row per (request, candidate) of ``predictions`` (``read_predictions``' frame).

    Columns: request_id, ts, the context, served_by, model_version, item_id, score, position
    (1 = shown first: the rank of the score, ties in candidate order as serving breaks them)
    and one column per logged feature (null where the request logged none). With
    ``requests`` (a simulation's ledger), ``ts`` is the simulated time of each request; the
    log's own timestamp is the wall-clock time the service received it.
    """
    if predictions.empty:
        raise ValueError("no logged predictions: nothing to monitor")
    head = predictions[[c for c in _REQUEST_COLUMNS if c != TS]].copy()
    head[TS] = pd.to_datetime(predictions["timestamp"], utc=True)
    if requests is not None:
        simulated = requests.set_index(REQUEST_ID)[TS]
        head[TS] = head[REQUEST_ID].map(simulated).fillna(head[TS])
    sizes = predictions["candidates"].map(len).to_numpy()
    rows = head.loc[head.index.repeat(sizes)].reset_index(drop=True)
    rows[schema.ITEM_ID] = np.concatenate(predictions["candidates"].to_list())
    rows[SCORE] = np.concatenate(predictions["scores"].to_list()).astype(float)
    rows[schema.POSITION] = _positions(rows[SCORE].to_numpy(), sizes)
    _shown_positions(rows, predictions, sizes)
    features = _feature_matrix(predictions, sizes)
    return pd.concat([rows, features], axis=1)


def _shown_positions(rows: pd.DataFrame, predictions: pd.DataFrame, sizes: np.ndarray) -> None:
    """Where the randomisation intervention shuffled a request's top positions, the position
    shown is the logged ``shown_order``'s, not the rank of the score (in place)."""
    if "shown_order" not in predictions.columns:
        return
    offsets = np.cumsum(sizes) - sizes
    for row in np.flatnonzero(predictions["shown_order"].notna().to_numpy()):
        shown = {int(item): p for p, item in enumerate(predictions["shown_order"].iat[row], 1)}
        block = slice(offsets[row], offsets[row] + sizes[row])
        items = rows[schema.ITEM_ID].to_numpy()[block]
        current = rows[schema.POSITION].to_numpy()[block]
        rows.loc[rows.index[block], schema.POSITION] = [
            shown.get(int(i), int(c)) for i, c in zip(items, current, strict=True)
        ]


def _positions(scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """1-based rank of each score inside its request, best first, stable."""
    request = np.repeat(np.arange(len(sizes)), sizes)
    order = np.lexsort((-scores, request))  # by request, then score descending, stably
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    position = np.empty(len(scores), dtype=np.int64)
    position[order] = np.arange(len(scores)) - first + 1
    return position


def _feature_matrix(predictions: pd.DataFrame, sizes: np.ndarray) -> pd.DataFrame:
    logged = predictions["features"].notna().to_numpy()
    if not logged.any():
        return pd.DataFrame(index=pd.RangeIndex(int(sizes.sum())))
    names = list(predictions.loc[logged, "feature_names"].iloc[0])
    matrix = np.full((int(sizes.sum()), len(names)), np.nan)
    offsets = np.cumsum(sizes) - sizes
    for row in np.flatnonzero(logged):
        if list(predictions["feature_names"].iat[row]) != names:
            raise ValueError(
                "logged requests disagree on their feature names; monitor one feature "
                "service (one model's contract) per report"
            )
        matrix[offsets[row] : offsets[row] + sizes[row]] = np.vstack(
            predictions["features"].iat[row]
        )
    return pd.DataFrame(matrix, columns=names)


# ---- labels and ranking quality ----
def with_labels(rows: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Candidate rows of the requests that have labels, with clicked/purchased/label."""
    label_columns = [REQUEST_ID, schema.ITEM_ID, schema.CLICKED, schema.PURCHASED, schema.LABEL]
    return rows.merge(labels[label_columns], on=[REQUEST_ID, schema.ITEM_ID], how="inner")


def session_quality(rows: pd.DataFrame, session: str = REQUEST_ID) -> pd.DataFrame:
    """Per search, the quality of the order it was shown in, from its click labels:

    - ``hit_rate@10``: 1 when something in the top 10 was clicked (0 for no click at all);
    - ``mrr``: 1 / position of the first click (0 without a click);
    - ``ndcg@10``: of the clicks and purchases (gain 1 and 2); NaN without a click, as in
      the offline evaluation: such a search says nothing about the order.

    ``rows``: candidate rows with ``position`` and ``label``. Uses ``models.metrics``, the
    code that evaluates models offline. Keeps the context columns present in ``rows``.
    """
    frame = (
        rows.rename(columns={session: schema.SESSION_ID}) if session != schema.SESSION_ID else rows
    )
    per_session = per_session_metrics(
        frame,
        -frame[schema.POSITION].to_numpy(dtype=float),
        schema.LABEL,
        k_values=(QUALITY_K,),
        recall_k=QUALITY_K,
    )
    quality = pd.DataFrame(
        {
            "hit_rate@10": (per_session[f"recall@{QUALITY_K}"] > 0).astype(float),
            "mrr": per_session["mrr"].fillna(0.0),
            "ndcg@10": per_session[f"ndcg@{QUALITY_K}"],
        }
    )
    context = [c for c in CONTEXT_COLUMNS if c in frame.columns]
    first = frame.drop_duplicates(schema.SESSION_ID).set_index(schema.SESSION_ID)[context]
    return quality.join(first).rename_axis(session).reset_index()
