"""Drift thresholds from the reference's own day-to-day variation.

A fixed threshold ("Wasserstein above 0.1 is drift") treats every feature alike, but the
features differ in how much they move from one ordinary day to the next: a day's 7-day
impression counts follow that week's traffic volume, user features rest on the few dozen
users of a day, while item prices barely move. So each column's threshold is set from the
training days themselves: the largest drift score between one training day and all the
others, times a margin. A window is drifted when it is farther from the reference than the
reference's own days are from each other.

Non-negative numeric columns (counts, prices, rates, ratios) are compared on the log scale,
``log1p(value)``: they vary multiplicatively and have long right tails, so on the raw scale a
handful of expensive items sets the standard deviation that normalises the Wasserstein
distance, and a 35% price rise hides under it. The reference decides which columns are
transformed (``log_scaled``), and windows follow it.

The scores are Evidently's (``ValueDrift`` with ``method="wasserstein"`` or
``"jensenshannon"``), computed here with the same formulas so that thirty-odd days cost
milliseconds instead of thirty Evidently reports; ``tests/unit/test_monitoring_drift.py``
checks both give the same number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

NUMERIC_METHOD = "wasserstein"  # Wasserstein distance in units of the reference's std
CATEGORICAL_METHOD = "jensenshannon"  # Jensen-Shannon distance of category frequencies


def drift_score(method: str, reference: pd.Series, current: pd.Series) -> float:
    """The drift score Evidently's ``ValueDrift(method=...)`` reports for these samples."""
    if method == NUMERIC_METHOD:
        reference, current = _finite(reference), _finite(current)
        norm = max(float(np.std(reference)), 0.001)
        return float(stats.wasserstein_distance(reference, current) / norm)
    if method == CATEGORICAL_METHOD:
        # Frequencies over the values seen on either side, NaN counted in the totals only.
        keys = pd.unique(pd.concat([current.dropna(), reference.dropna()]))
        ref = reference.value_counts().reindex(keys, fill_value=0).to_numpy() / len(reference)
        cur = current.value_counts().reindex(keys, fill_value=0).to_numpy() / len(current)
        return float(distance.jensenshannon(ref, cur))
    raise ValueError(
        f"unsupported drift method {method!r}; use {NUMERIC_METHOD!r} or {CATEGORICAL_METHOD!r}"
    )


def _finite(values: pd.Series) -> np.ndarray:
    values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return values[np.isfinite(values)]


def day_to_day_drift(
    frame: pd.DataFrame, methods: Mapping[str, str], day: pd.Series
) -> dict[str, float]:
    """Per column of ``methods``: the largest drift score of one day's rows against the
    rows of every other day of ``frame``."""
    days = pd.Series(day).dt.floor("D").to_numpy()
    distinct = np.unique(days)
    if len(distinct) < 2:
        raise ValueError("day-to-day drift needs rows from at least two days")
    largest = {}
    for column, method in methods.items():
        values = frame[column]
        largest[column] = max(
            drift_score(method, values[days != d], values[days == d]) for d in distinct
        )
    return largest


def log_scaled(frame: pd.DataFrame, numerical: Sequence[str]) -> list[str]:
    """The numeric columns never negative in ``frame`` (the reference): compared as log1p."""
    return [c for c in numerical if float(frame[c].min()) >= 0]


def on_drift_scale(frame: pd.DataFrame, log_columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with ``log1p`` applied to ``log_columns`` (names unchanged)."""
    return frame.assign(**{c: np.log1p(frame[c].clip(lower=0)) for c in log_columns})


def column_methods(numerical: Sequence[str], categorical: Sequence[str]) -> dict[str, str]:
    return {
        **{c: NUMERIC_METHOD for c in numerical},
        **{c: CATEGORICAL_METHOD for c in categorical},
    }
