"""Calibration of click probabilities: when the model says 20%, do 20% of those items get clicked?

Only models that output probabilities (the scikit-learn baseline) are judged this way;
a ranker's scores only have to be in the right order. Calibration matters where a score
is used as a probability: expected revenue, blending with ads, thresholds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ranklab.schema import CLICKED


def calibration(
    frame: pd.DataFrame, probs: np.ndarray, n_bins: int = 10
) -> tuple[pd.DataFrame, float]:
    """Reliability table over equal-width probability bins, and the expected calibration error.

    ECE = sum over bins of (rows in bin / all rows) * |observed CTR - mean predicted|: the
    average gap between what was predicted and what happened, weighted by traffic.
    """
    if CLICKED not in frame.columns:
        raise KeyError(
            f"calibration needs a {CLICKED!r} column (logged clicks); graded labels are not "
            "click probabilities"
        )
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (len(frame),):
        raise ValueError(
            f"calibration: expected {len(frame)} probabilities, got shape {probs.shape}"
        )
    if np.isnan(probs).any() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("calibration: probabilities must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"calibration: n_bins must be at least 1, got {n_bins}")

    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Against the interior edges only: bin i holds [edge i, edge i+1), and 1.0 the last bin.
    bin_index = np.digitize(probs, edges[1:-1])
    rows = pd.DataFrame(
        {"bin": bin_index, "predicted": probs, "clicked": frame[CLICKED].to_numpy()}
    )
    table = (
        rows.groupby("bin")
        .agg(
            n=("predicted", "size"),
            mean_predicted=("predicted", "mean"),
            observed_ctr=("clicked", "mean"),
        )
        .reindex(range(n_bins))
        .assign(lo=edges[:-1], hi=edges[1:])
        .reset_index()
    )
    table["n"] = table["n"].fillna(0).astype(int)
    table = table[["bin", "lo", "hi", "n", "mean_predicted", "observed_ctr"]]
    filled = table[table["n"] > 0]
    gap = (filled["observed_ctr"] - filled["mean_predicted"]).abs()
    ece = float((filled["n"] / len(probs) * gap).sum())
    return table, ece
