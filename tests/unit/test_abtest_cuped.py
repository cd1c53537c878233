"""CUPED on synthetic users whose pre-experiment activity predicts their clicks."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.abtest.cuped import fit_cuped
from monitoring.abtest.readout import ArmSample, lift


def _arm(rng, name: str, n: int, effect: float, noise: float):
    """One session per user; clicks = the user's habit (seen before) + effect + noise."""
    habit = rng.gamma(2.0, 0.5, n)  # clicks per session before the experiment
    clicks = habit + effect + rng.normal(0, noise, n)
    covariates = np.column_stack([np.ones(n) * 5, habit * 5])  # pre sessions, pre clicks
    return ArmSample(name, clicks, np.ones(n), covariates)


def test_cuped_removes_the_variance_the_covariate_explains():
    rng = np.random.default_rng(0)
    # var(habit) = 0.5, noise var 0.5: the habit explains half the variance.
    control, treatment = (_arm(rng, n, 10_000, e, np.sqrt(0.5)) for n, e in [("c", 0), ("t", 0.05)])
    plain, adjusted = lift(control, treatment), lift(control, treatment, cuped=True)
    assert adjusted.cuped.variance_reduction == pytest.approx(0.5, abs=0.03)
    width = lambda r: r.absolute.hi - r.absolute.lo  # noqa: E731
    assert width(adjusted) == pytest.approx(width(plain) * np.sqrt(0.5), rel=0.05)
    assert adjusted.absolute.lo < 0.05 < adjusted.absolute.hi  # still the true effect


def test_cuped_stays_unbiased_over_many_experiments():
    rng = np.random.default_rng(1)
    estimates = [
        lift(_arm(rng, "c", 500, 0, 0.5), _arm(rng, "t", 500, 0.1, 0.5), cuped=True).absolute.value
        for _ in range(200)
    ]
    assert np.mean(estimates) == pytest.approx(0.1, abs=0.01)


def test_an_unrelated_covariate_reduces_nothing():
    rng = np.random.default_rng(2)
    values = [rng.normal(size=5_000), rng.normal(size=5_000)]
    covariates = [rng.normal(size=(5_000, 2)), rng.normal(size=(5_000, 2))]
    fit = fit_cuped(values, covariates, ("a", "b"))
    assert abs(fit.variance_reduction) < 0.005


def test_fit_cuped_names_a_shape_mismatch():
    with pytest.raises(ValueError, match="needs 2 columns"):
        fit_cuped([np.zeros(3)], [np.zeros((3, 1))], ("a", "b"))
