"""The readout's statistics on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.abtest.exposures import ExposureError, exposures_from_log
from monitoring.abtest.readout import (
    ArmSample,
    ReadoutConfig,
    lift,
    read_out,
    sample_ratio_check,
)

WEIGHTS = {"control": 1.0, "treatment": 1.0}


def _users(rng, n: int, rate: float, spread: float = 0.5):
    """Users with 1-6 sessions each and their own click rate (sessions of a user are alike)."""
    sessions = rng.integers(1, 7, n)
    own_rate = rate * rng.lognormal(-(spread**2) / 2, spread, n)
    return sessions, rng.poisson(own_rate * sessions)


def _exposures(rng, n_users: int, rates: dict[str, float], latency: dict[str, float] | None = None):
    """One row per session; each user's clicks spread at random over their sessions."""
    frames = []
    for offset, (arm, rate) in enumerate(rates.items()):
        sessions, clicks = _users(rng, n_users, rate)
        user = np.repeat(np.arange(n_users), sessions)
        first = np.r_[0, np.cumsum(sessions)[:-1]]
        session_of_click = np.repeat(first, clicks) + rng.integers(0, np.repeat(sessions, clicks))
        frames.append(
            pd.DataFrame(
                {
                    "request_id": [f"{arm}-{i}" for i in range(len(user))],
                    "user_id": offset * n_users + user,
                    "arm": arm,
                    "clicks": np.bincount(session_of_click, minlength=len(user)),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    frame["ts"] = pd.Timestamp("2026-10-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 7 * 86_400, len(frame)), unit="s"
    )
    frame["served_by"] = "model"
    base = frame["arm"].map(latency or {}).fillna(10.0).to_numpy()
    frame["latency_ms"] = base + rng.exponential(2.0, len(frame))
    frame["shown"] = 25
    return frame


def test_srm_catches_a_52_48_split_at_20k_users_and_passes_50_50():
    broken = sample_ratio_check({"control": 10_400, "treatment": 9_600}, WEIGHTS)
    fine = sample_ratio_check({"control": 10_000, "treatment": 10_000}, WEIGHTS)
    assert not broken.passed and broken.p_value < 1e-6
    assert fine.passed and fine.p_value == pytest.approx(1.0)


def test_srm_uses_the_configured_weights():
    # 80/20 is what a 4:1 experiment should give: no mismatch there, a mismatch at 1:1.
    counts = {"control": 8_000, "treatment": 2_000}
    assert sample_ratio_check(counts, {"control": 4, "treatment": 1}).passed
    assert not sample_ratio_check(counts, WEIGHTS).passed


def test_srm_rejects_an_arm_the_experiment_does_not_have():
    with pytest.raises(ExposureError, match="not in the experiment"):
        sample_ratio_check({"control": 5, "treatment": 5, "other": 1}, WEIGHTS)


def test_lift_finds_a_known_effect_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    c_sessions, c_clicks = _users(rng, 3_000, 1.0)
    t_sessions, t_clicks = _users(rng, 3_000, 1.2)
    result = lift(
        ArmSample("control", c_clicks.astype(float), c_sessions.astype(float)),
        ArmSample("treatment", t_clicks.astype(float), t_sessions.astype(float)),
    )
    assert result.p_value < 1e-6 and result.significant
    assert result.absolute.lo < 0.2 < result.absolute.hi
    assert result.relative.lo < 0.2 < result.relative.hi


def test_user_level_delta_method_keeps_alpha_where_per_session_tests_do_not():
    """A/A on users whose sessions are alike: the delta method's false-positive rate stays
    near 5%, a per-session z-test (every session independent) rejects far more often."""
    rng = np.random.default_rng(1)
    runs, delta_hits, naive_hits = 300, 0, 0
    for _ in range(runs):
        arms = []
        for name in ("control", "treatment"):
            sessions, clicks = _users(rng, 400, 1.0, spread=0.8)
            arms.append(ArmSample(name, clicks.astype(float), sessions.astype(float)))
        delta_hits += lift(*arms).p_value < 0.05
        # Per-session: each user's clicks spread evenly over their sessions (the most
        # favourable case for the naive test) and every session counted as independent.
        means = [a.numerator / a.denominator for a in arms]
        per_session = [
            np.repeat(m, a.denominator.astype(int)) for m, a in zip(means, arms, strict=True)
        ]
        se = np.hypot(*(p.std(ddof=1) / np.sqrt(len(p)) for p in per_session))
        z = abs(arms[1].ratio - arms[0].ratio) / se
        naive_hits += z > 1.96
    assert 0.02 <= delta_hits / runs <= 0.085
    assert naive_hits / runs > delta_hits / runs + 0.05


def test_readout_ships_a_better_treatment_and_blocks_on_sample_ratio_mismatch():
    rng = np.random.default_rng(2)
    exposures = _exposures(rng, 1_500, {"control": 1.0, "treatment": 1.25})
    readout = read_out("exp", exposures, WEIGHTS)
    assert readout.decision.verdict == "ship", readout.decision.rule
    assert readout.srm.passed and readout.lift.relative.lo > 0
    # The same data read as if it had been a 70/30 experiment: the split is wrong, no lift.
    blocked = read_out("exp", exposures, {"control": 7.0, "treatment": 3.0})
    assert blocked.decision.verdict == "blocked" and blocked.lift is None
    assert "sample ratio mismatch" in blocked.decision.rule


def test_readout_of_equal_arms_is_inconclusive():
    rng = np.random.default_rng(3)
    exposures = _exposures(rng, 1_000, {"control": 1.0, "treatment": 1.0})
    assert read_out("exp", exposures, WEIGHTS).decision.verdict == "inconclusive"


def test_a_slower_treatment_breaches_the_latency_guardrail_even_if_it_clicks_better():
    rng = np.random.default_rng(4)
    exposures = _exposures(
        rng, 1_000, {"control": 1.0, "treatment": 1.3}, latency={"treatment": 40.0}
    )
    readout = read_out("exp", exposures, WEIGHTS)
    breached = {g.name for g in readout.guardrails if g.breached}
    assert breached == {"latency_p95_ms"}
    assert readout.decision.verdict == "don't ship"
    assert "latency_p95_ms" in readout.decision.rule


def test_fallbacks_in_the_treatment_breach_their_guardrail():
    rng = np.random.default_rng(5)
    exposures = _exposures(rng, 800, {"control": 1.0, "treatment": 1.0})
    treatment = exposures.index[exposures["arm"] == "treatment"]
    exposures.loc[treatment[::10], "served_by"] = "fallback:timeout"  # 10% of its requests
    readout = read_out("exp", exposures, WEIGHTS)
    assert {g.name for g in readout.guardrails if g.breached} == {"fallback_rate"}


def test_read_out_needs_the_arms_it_compares():
    rng = np.random.default_rng(6)
    exposures = _exposures(rng, 50, {"control": 1.0, "treatment": 1.0})
    with pytest.raises(ExposureError, match="'treatment' is not in the experiment"):
        read_out("exp", exposures, {"control": 1.0, "other": 1.0})
    with pytest.raises(ExposureError, match="needs pre-experiment covariates"):
        read_out("exp", exposures, WEIGHTS, ReadoutConfig(cuped=True))


def _log(rows):
    return pd.DataFrame(
        rows,
        columns=["request_id", "user_pseudonym", "timestamp", "experiment", "experiment_arm",
                 "served_by", "latency_ms", "k"],
    ).assign(model_version="3")  # fmt: skip


def test_exposures_join_the_log_to_clicks_by_request_id_and_keep_the_experiments_rows():
    ts = pd.Timestamp("2026-10-01", tz="UTC")
    log = _log(
        [
            ("r1", 1, ts, "exp", "control", "model", 3.0, 25),
            ("r2", 2, ts, "exp", "treatment", "model", 4.0, 25),
            ("r3", 3, ts, None, None, "model", 4.0, 25),  # no experiment ran
            ("r4", 4, ts, "other", "control", "model", 4.0, 25),  # another experiment
        ]
    )
    clicks = pd.DataFrame({"request_id": ["r1", "r1", "r2", "r3"], "item_id": [1, 2, 3, 4]})
    exposures = exposures_from_log(log, clicks, "exp")
    assert exposures.set_index("request_id")["clicks"].to_dict() == {"r1": 2, "r2": 1}


def test_exposures_refuse_a_request_logged_twice_and_name_missing_columns():
    ts = pd.Timestamp("2026-10-01", tz="UTC")
    row = ("r1", 1, ts, "exp", "control", "model", 3.0, 25)
    clicks = pd.DataFrame({"request_id": ["r1"]})
    with pytest.raises(ExposureError, match="appear twice"):
        exposures_from_log(_log([row, row]), clicks, "exp")
    with pytest.raises(ExposureError, match=r"lacks columns \['latency_ms'\]"):
        exposures_from_log(_log([row]).drop(columns=["latency_ms"]), clicks, "exp")
    with pytest.raises(ExposureError, match="no request served in experiment 'nope'"):
        exposures_from_log(_log([row]), clicks, "nope")


def test_an_arm_that_received_nobody_blocks_the_readout_without_crashing():
    rng = np.random.default_rng(7)
    exposures = _exposures(rng, 500, {"control": 1.0, "treatment": 1.0})
    exposures["arm"] = "control"  # the split sent everyone to control
    readout = read_out("exp", exposures, WEIGHTS)
    assert readout.decision.verdict == "blocked" and readout.guardrails == []
