"""Offline evaluation: every metric with a 95% bootstrap interval over sessions.

Sessions, not rows, are resampled: rows of one session are not independent (they share a
user, a query and one ranking), and the session is what a user experiences.

Each *gain* is a column of the frame the metrics grade an order by:
- ``label``: what was observed (clicks and purchases, or the LETOR grade), as logged: biased
  towards whatever the old ranker put on top;
- ``label_ipw``: the same label weighted by the inverse of its estimated examination
  propensity (``models/propensity.py``), where logged positions exist: an estimate of the
  label free of position bias, from the logs alone. The gate decides on it.

A grader that knows more (the simulator's ground truth) passes its own gain columns in
``extra_gains``; this module never looks for them.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    snips_dcg,
)
from models.slices import slice_table
from ranklab.schema import CLICKED, DEBIASED_LABEL, LABEL, SESSION_ID

# The bootstrap lives in models/bootstrap.py (slices.py needs it too); it is part of this
# module's public surface.
__all__ = [
    "Estimate",
    "ModelEvaluation",
    "bootstrap_ci",
    "evaluate",
    "paired_bootstrap_diff",
]

# ---- one model on one frame -----------------------------------------------------------------


@dataclass
class ModelEvaluation:
    """Everything measured for one model on one frame (usually the test split)."""

    model: str
    # gain name ("label", "label_ipw", ...) -> per-session metrics, index session_id, with the
    # no-relevant policy already applied: NaN-free, and the same sessions for every model
    # evaluated on the same frame, so two models pair up for paired_bootstrap_diff.
    per_session: dict[str, pd.DataFrame]
    overall: dict[str, dict[str, Estimate]]  # gain -> metric -> Estimate
    slices_by_gain: dict[str, pd.DataFrame]  # gain -> PRIMARY_METRIC per slice (slices.py)
    no_relevant: dict[str, NoRelevant] = field(default_factory=dict)  # gain -> policy used

    def primary(self, gain: str = LABEL) -> Estimate:
        return self.overall[gain][PRIMARY_METRIC]

    @property
    def slices(self) -> pd.DataFrame:
        """PRIMARY_METRIC per slice on the observed label."""
        return self.slices_by_gain[LABEL]


def evaluate(
    frame: pd.DataFrame,
    scores: np.ndarray,
    model: str,
    slice_columns: list[str],
    seed: int,
    n_boot: int = 1000,
    no_relevant: NoRelevant | None = None,
    extra_gains: Mapping[str, NoRelevant] | None = None,
) -> ModelEvaluation:
    """Metrics with intervals on the observed label, on the debiased label where the frame
    has it, and on each of ``extra_gains`` (a grader's columns, with their no-relevant policy).

    ``no_relevant`` defaults to ``default_no_relevant(frame)``: "skip" for click labels,
    "one" for graded (LETOR) labels. The debiased label uses the label's policy.
    """
    attributes = session_attributes(frame, slice_columns)
    label_policy = no_relevant or default_no_relevant(frame)
    policies: dict[str, NoRelevant] = {LABEL: label_policy}
    if DEBIASED_LABEL in frame.columns:
        policies[DEBIASED_LABEL] = label_policy
    missing = [g for g in (extra_gains or {}) if g not in frame.columns]
    if missing:
        raise KeyError(f"evaluate({model}): frame lacks the gain columns {missing}")
    policies |= dict(extra_gains or {})

    per_session, overall = {}, {}
    for gain, policy in policies.items():
        per_session[gain] = session_metrics(frame, scores, gain, policy)
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
        slices_by_gain={gain: slices_for(gain) for gain in policies},
        no_relevant=policies,
    )


def session_metrics(
    frame: pd.DataFrame, scores: np.ndarray, gain: str, no_relevant: NoRelevant
) -> pd.DataFrame:
    """Every metric per session on ``gain``, the no-relevant policy applied: what the
    evaluation, the candidate choice and the gate all compare.

    On the debiased label the primary metric is the SNIPS estimate of DCG@10
    (``models.metrics.snips_dcg``): per-session NDCG would divide the inverse-propensity
    weights out again. The other metrics stay as they are.
    """
    per_session = resolve_no_relevant(per_session_metrics(frame, scores, gain), no_relevant)
    if gain == DEBIASED_LABEL:
        snips = snips_dcg(frame, scores, DEBIASED_LABEL, k=10)
        per_session[PRIMARY_METRIC] = snips.reindex(per_session.index).fillna(0.0)
    return per_session


def decision_gain(frame: pd.DataFrame) -> str:
    """The gain models are chosen and promoted on: the debiased label where the frame has
    it (logged positions), else the label itself (graded labels have no position bias)."""
    return DEBIASED_LABEL if DEBIASED_LABEL in frame.columns else LABEL


def default_no_relevant(frame: pd.DataFrame) -> NoRelevant:
    """Click labels skip sessions without a click; graded labels (LETOR) count them as 1."""
    return "skip" if CLICKED in frame.columns else "one"


def session_attributes(frame: pd.DataFrame, slice_columns: list[str]) -> pd.DataFrame:
    """One row per session (index session_id): its slice values, taken from its first row."""
    missing = [c for c in slice_columns if c not in frame.columns]
    if missing:
        raise KeyError(f"session_attributes: frame lacks slice columns {missing}")
    return frame.groupby(SESSION_ID, sort=False)[list(slice_columns)].first()
