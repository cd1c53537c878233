"""CUPED: less variance from what each user did before the experiment (Deng et al., 2013).

A user's clicks during the experiment are partly predictable from their activity before it
(how often they search, how often they click). That part is noise for the comparison of
arms: the arms' users differ in it only by the luck of the hash. CUPED subtracts it::

    Y_cv = Y - theta * (X - mean(X))      theta = cov(Y, X) / var(X)

``X`` was measured before assignment, so the treatment cannot move it, ``mean(X)`` is the
same for both arms in expectation, and the adjusted difference stays unbiased; its
variance is ``var(Y)(1 - rho^2)``.

The primary metric here is a ratio (clicks / sessions per arm), so ``Y`` is its delta-
method linearisation per user (``readout.linearise``): CUPED on ratio metrics as Deng,
Knoblich and Lu (2018) do it. ``theta`` is one least-squares fit over both arms (each arm
centred on its own means, so the treatment effect does not leak into ``theta``), and
``mean(X)`` is the pooled mean of both arms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CupedFit:
    """The fitted adjustment and what it achieved."""

    covariates: tuple[str, ...]
    theta: np.ndarray  # one coefficient per covariate
    pooled_mean: np.ndarray  # mean of each covariate over both arms
    variance_reduction: float  # 1 - var(adjusted) / var(raw), within arms, pooled

    def adjust(self, values: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        """``values - (covariates - pooled_mean) @ theta``, row by row."""
        return values - (covariates - self.pooled_mean) @ self.theta


def fit_cuped(
    values: Sequence[np.ndarray], covariates: Sequence[np.ndarray], names: Sequence[str]
) -> CupedFit:
    """Fit ``theta`` on per-arm ``values`` (n_arm,) and ``covariates`` (n_arm, k)."""
    if len(values) != len(covariates) or not values:
        raise ValueError("fit_cuped: give one values array and one covariate matrix per arm")
    matrices = [
        np.asarray(x, dtype=float).reshape(len(y), -1)
        for y, x in zip(values, covariates, strict=True)
    ]
    k = matrices[0].shape[1]
    if k != len(names) or any(m.shape[1] != k for m in matrices):
        raise ValueError(f"fit_cuped: every covariate matrix needs {len(names)} columns")
    y = np.concatenate([v - v.mean() for v in values])
    x = np.concatenate([m - m.mean(axis=0) for m in matrices])
    theta, *_ = np.linalg.lstsq(x, y, rcond=None)
    raw = float(np.var(y))
    reduction = 0.0 if raw == 0 else 1.0 - float(np.var(y - x @ theta)) / raw
    pooled = np.concatenate(matrices).mean(axis=0)
    return CupedFit(tuple(names), theta, pooled, reduction)
