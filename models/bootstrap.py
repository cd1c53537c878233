"""Bootstrap intervals over sessions: the uncertainty attached to every reported number.

Percentile bootstrap: resample sessions with replacement, recompute the mean, and read the
interval off the spread of those means. Vectorised: one index matrix [n_boot, n_sessions]
(1000 resamples of 1000 sessions take milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Bootstrap draws are made in blocks of about this many indices, so memory stays flat
# however many sessions there are (1000 draws x 1000 sessions is one block).
_BOOTSTRAP_BLOCK = 2**22


@dataclass(frozen=True)
class Estimate:
    """A mean over sessions and its 95% percentile-bootstrap interval."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero (for differences)."""
        return self.lo > 0 or self.hi < 0

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}] (n={self.n})"


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> Estimate:
    """Mean of ``values`` (one per session) with a percentile-bootstrap interval."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"bootstrap_ci: need a non-empty 1-d array, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError(
            "bootstrap_ci: values contain NaN; resolve sessions without relevance first"
        )
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"bootstrap_ci: need n_boot >= 1 and 0 < alpha < 1, got {n_boot}, {alpha}")
    resampled_means = _resampled_means(values, n_boot, seed)
    lo, hi = np.quantile(resampled_means, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(values.mean()), float(lo), float(hi), len(values))


def paired_bootstrap_diff(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> Estimate:
    """Mean of ``a - b`` over the same sessions, resampled together.

    Pairing removes the session-to-session variation both models share (easy and hard
    queries), so the interval is much tighter than comparing two separate intervals.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(
            f"paired_bootstrap_diff: a and b must align by session: {a.shape} vs {b.shape}"
        )
    return bootstrap_ci(a - b, n_boot=n_boot, seed=seed, alpha=alpha)


def _resampled_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples with replacement: an index matrix [n_boot, n] per block."""
    rng = np.random.default_rng(seed)
    n = len(values)
    block = max(1, _BOOTSTRAP_BLOCK // n)
    means = []
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        index = rng.integers(0, n, size=(rows, n))
        means.append(values[index].mean(axis=1))
    return np.concatenate(means)
