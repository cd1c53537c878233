"""Metrics per slice (device, region, user segment, query category), each with its count.

An overall gain can hide a loss for a group of users. Each slice is reported with its
number of sessions and a bootstrap interval; slices with fewer than ``min_sessions``
sessions are marked ``too_small``: shown, but judged neither good nor bad.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.bootstrap import bootstrap_ci

SLICE_TABLE_COLUMNS = (
    "slice",
    "value",
    "n_sessions",
    "mean",
    "lo",
    "hi",
    "gap_to_overall",
    "too_small",
)


def slice_table(
    per_session: pd.DataFrame,
    session_attributes: pd.DataFrame,
    metric: str,
    slice_columns: list[str] | tuple[str, ...],
    min_sessions: int = 50,
    seed: int = 0,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """One row per (slice column, value): the metric's mean, 95% interval and gap to overall.

    ``per_session``: index session_id, NaN-free (the no-relevant policy applied).
    ``session_attributes``: index session_id, one value per slice column.
    """
    _check_inputs(per_session, session_attributes, metric, slice_columns)
    values = per_session[metric]
    attributes = session_attributes.loc[per_session.index]
    overall = float(values.mean())

    rows = []
    for column in slice_columns:
        for value, in_slice in values.groupby(attributes[column].to_numpy(), sort=True):
            estimate = bootstrap_ci(in_slice.to_numpy(), n_boot=n_boot, seed=seed)
            rows.append(
                {
                    "slice": column,
                    "value": value,
                    "n_sessions": estimate.n,
                    "mean": estimate.mean,
                    "lo": estimate.lo,
                    "hi": estimate.hi,
                    "gap_to_overall": estimate.mean - overall,
                    "too_small": estimate.n < min_sessions,
                }
            )
    return pd.DataFrame(rows, columns=list(SLICE_TABLE_COLUMNS))


def worst_slice(table: pd.DataFrame) -> pd.Series:
    """The slice with the lowest mean among those that are large enough to judge."""
    judged = table[~table["too_small"]]
    if judged.empty:
        raise ValueError("worst_slice: every slice is too small to judge")
    return judged.loc[judged["mean"].idxmin()]


def _check_inputs(
    per_session: pd.DataFrame,
    session_attributes: pd.DataFrame,
    metric: str,
    slice_columns: list[str] | tuple[str, ...],
) -> None:
    if metric not in per_session.columns:
        raise KeyError(f"slice_table: per-session metrics lack {metric!r}")
    if per_session[metric].isna().any():
        raise ValueError(f"slice_table: {metric!r} has NaN sessions; apply the no-relevant policy")
    missing = [c for c in slice_columns if c not in session_attributes.columns]
    if missing:
        raise KeyError(f"slice_table: session attributes lack slice columns {missing}")
    unknown = ~per_session.index.isin(session_attributes.index)
    if unknown.any():
        raise KeyError(
            f"slice_table: {int(unknown.sum())} sessions have no attributes, "
            f"e.g. {per_session.index[unknown][:3].tolist()}"
        )
    if np.asarray(session_attributes.index.duplicated()).any():
        raise ValueError("slice_table: session_attributes has more than one row per session")
