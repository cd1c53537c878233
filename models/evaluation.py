"""Offline evaluation: every metric with a 95% bootstrap interval over sessions.

Sessions, not rows, are resampled: rows of one session are not independent (they share a
user, a query and one ranking), and the session is what a user experiences.

Two kinds of gain are evaluated where they exist:
- ``label``: what was observed (clicks and purchases, or the LETOR grade). This is all a
  production system ever sees, so the promotion gate decides on it.
- ``true_relevance``: the generator's ground truth, free of position bias. It says whether
  a gain on the observed label is a gain for users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.bootstrap import Estimate, bootstrap_ci, paired_bootstrap_diff
from models.metrics import (
    METRICS,
    PRIMARY_METRIC,
    NoRelevant,
    per_session_metrics,
    resolve_no_relevant,
)
from models.slices import slice_table
from ranklab.schema import CLICKED, LABEL, SESSION_ID, TRUE_RELEVANCE, TRUE_UTILITY

# The bootstrap lives in models/bootstrap.py (slices.py needs it too); it is part of this
# module's public surface.
__all__ = [
    "Estimate",
    "ModelEvaluation",
    "bootstrap_ci",
    "evaluate",
    "oracle_scores",
    "paired_bootstrap_diff",
]

# ---- one model on one frame -----------------------------------------------------------------


@dataclass
class ModelEvaluation:
    """Everything measured for one model on one frame (usually the test split)."""

    model: str
    # gain name ("label", "true_relevance") -> per-session metrics, index session_id, with the
    # no-relevant policy already applied: NaN-free, and the same sessions for every model
    # evaluated on the same frame, so two models pair up for paired_bootstrap_diff.
    per_session: dict[str, pd.DataFrame]
    overall: dict[str, dict[str, Estimate]]  # gain -> metric -> Estimate
    slices: pd.DataFrame  # PRIMARY_METRIC on the observed label, per slice (slices.py)
    truth_slices: pd.DataFrame | None = None  # the same on the truth, where it exists
    no_relevant: dict[str, NoRelevant] = field(default_factory=dict)  # gain -> policy used

    def primary(self, gain: str = LABEL) -> Estimate:
        return self.overall[gain][PRIMARY_METRIC]


def evaluate(
    frame: pd.DataFrame,
    scores: np.ndarray,
    model: str,
    slice_columns: list[str],
    seed: int,
    n_boot: int = 1000,
    no_relevant: NoRelevant | None = None,
) -> ModelEvaluation:
    """Metrics with intervals on the observed label and, where known, on the truth.

    ``no_relevant`` defaults to ``default_no_relevant(frame)``: "skip" for click labels,
    "one" for graded (LETOR) labels. The truth always uses "skip".
    """
    attributes = session_attributes(frame, slice_columns)
    policies: dict[str, NoRelevant] = {LABEL: no_relevant or default_no_relevant(frame)}
    if has_truth(frame):
        policies[TRUE_RELEVANCE] = "skip"

    per_session, overall = {}, {}
    for gain, policy in policies.items():
        raw = per_session_metrics(frame, scores, gain_column=gain)
        per_session[gain] = resolve_no_relevant(raw, policy)
        if per_session[gain].empty:
            raise ValueError(f"evaluate({model}): no session has an item with {gain} > 0")
        overall[gain] = {
            metric: bootstrap_ci(per_session[gain][metric].to_numpy(), n_boot=n_boot, seed=seed)
            for metric in METRICS
        }

    def slices_for(gain: str) -> pd.DataFrame:
        return slice_table(
            per_session[gain], attributes, PRIMARY_METRIC, slice_columns, seed=seed, n_boot=n_boot
        )

    return ModelEvaluation(
        model=model,
        per_session=per_session,
        overall=overall,
        slices=slices_for(LABEL),
        truth_slices=slices_for(TRUE_RELEVANCE) if TRUE_RELEVANCE in policies else None,
        no_relevant=policies,
    )


def oracle_scores(frame: pd.DataFrame) -> np.ndarray:
    """The best possible ranking: by the true utility where known, else by the label itself."""
    column = TRUE_UTILITY if has_truth(frame) else LABEL
    return frame[column].to_numpy(dtype=float)


def default_no_relevant(frame: pd.DataFrame) -> NoRelevant:
    """Click labels skip sessions without a click; graded labels (LETOR) count them as 1."""
    return "skip" if CLICKED in frame.columns else "one"


def has_truth(frame: pd.DataFrame) -> bool:
    """Whether every row carries the generator's ground truth (never true for real data)."""
    return (
        TRUE_RELEVANCE in frame.columns
        and TRUE_UTILITY in frame.columns
        and bool(frame[TRUE_RELEVANCE].notna().all())
    )


def session_attributes(frame: pd.DataFrame, slice_columns: list[str]) -> pd.DataFrame:
    """One row per session (index session_id): its slice values, taken from its first row."""
    missing = [c for c in slice_columns if c not in frame.columns]
    if missing:
        raise KeyError(f"session_attributes: frame lacks slice columns {missing}")
    return frame.groupby(SESSION_ID, sort=False)[list(slice_columns)].first()
