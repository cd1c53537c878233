"""The power analysis: its sample size gives the power it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.abtest.power import baseline_of, sample_size
from monitoring.abtest.readout import ArmSample, lift


def _sessions(rng, users: int, per_user: int, rate: float, spread: float) -> pd.DataFrame:
    own = rate * rng.lognormal(-(spread**2) / 2, spread, users)
    user = np.repeat(np.arange(users), per_user)
    return pd.DataFrame({"user_id": user, "clicks": rng.poisson(own[user]), "shown": 25})


def _experiment_significant(rng, per_arm_users: int, per_user: int, rate: float, lift_: float):
    """One simulated experiment from the same model as ``_sessions`` (per-user sums directly:
    a sum of Poisson sessions is Poisson)."""
    arms = []
    for name, r in (("control", rate), ("treatment", rate * (1 + lift_))):
        own = r * rng.lognormal(-(0.6**2) / 2, 0.6, per_arm_users)
        clicks = rng.poisson(own * per_user).astype(float)
        arms.append(ArmSample(name, clicks, np.full(per_arm_users, float(per_user))))
    return lift(*arms).p_value < 0.05


def test_the_sample_size_gives_about_the_promised_power():
    rng = np.random.default_rng(0)
    baseline = baseline_of(_sessions(rng, 4_000, 3, 1.0, spread=0.6))
    size = sample_size(baseline, mde=0.10, relative=True, power=0.8)
    users_per_arm = int(np.ceil(size.sessions_control / 3))
    hits = [_experiment_significant(rng, users_per_arm, 3, 1.0, 0.10) for _ in range(300)]
    assert 0.72 <= np.mean(hits) <= 0.88  # 0.8, within sampling error of 300 runs


def test_alike_sessions_of_one_user_raise_the_effective_spread():
    rng = np.random.default_rng(1)
    one_each = baseline_of(_sessions(rng, 6_000, 1, 1.0, spread=0.8))
    five_each = baseline_of(_sessions(rng, 1_200, 5, 1.0, spread=0.8))
    assert five_each.sd > 1.2 * one_each.sd
    assert sample_size(five_each, 0.1).sessions > sample_size(one_each, 0.1).sessions


def test_an_unequal_split_needs_more_sessions_in_all():
    rng = np.random.default_rng(2)
    baseline = baseline_of(_sessions(rng, 3_000, 2, 1.0, spread=0.5))
    even, skewed = sample_size(baseline, 0.1), sample_size(baseline, 0.1, treatment_share=0.2)
    assert skewed.sessions > even.sessions
    assert skewed.sessions_treatment < skewed.sessions_control


def test_sample_size_refuses_what_it_cannot_size():
    rng = np.random.default_rng(3)
    baseline = baseline_of(_sessions(rng, 100, 1, 1.0, spread=0.5))
    with pytest.raises(ValueError, match="must not be 0"):
        sample_size(baseline, 0.0)
    with pytest.raises(ValueError, match=r"treatment_share must lie in \(0, 1\)"):
        sample_size(baseline, 0.1, treatment_share=1.0)
