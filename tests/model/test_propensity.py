"""The examination curve estimated from randomised logs (``models/propensity.py``).

Logs come from ``pbm_logs`` (numpy, a known theta per device), never from the simulator.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pbm_logs import ETAS, make_pbm_log

from models.propensity import POOLED, PropensityCurve, estimate_em, estimate_from_randomized
from ranklab.schema import CLICKED, DEVICE, ITEM_ID, POSITION, RANDOMIZED

POSITIONS = np.arange(1, 11)


@pytest.fixture(scope="module")
def big_curve() -> PropensityCurve:
    log = make_pbm_log(n_sessions=24_000, randomized_share=0.5, seed=11)
    return estimate_from_randomized(log.frame, n_boot=500, seed=0)


def test_per_position_estimates_recover_theta_per_device(big_curve):
    for device, eta in ETAS.items():
        curve = big_curve.curve(device)
        truth = POSITIONS**-eta
        estimate = np.array(curve.estimate)
        assert estimate[0] == 1.0
        np.testing.assert_allclose(estimate, truth, atol=0.04)
        inside = (np.array(curve.lo) <= truth) & (truth <= np.array(curve.hi))
        assert inside.sum() >= 9, f"{device}: truth outside the interval at {POSITIONS[~inside]}"
        assert curve.n_sessions > 3_500
        assert curve.n_clicks > 4_000


def test_power_law_fit_recovers_eta(big_curve):
    for device, eta in ETAS.items():
        curve = big_curve.curve(device)
        assert curve.eta == pytest.approx(eta, abs=0.04)
        assert curve.eta_lo < eta < curve.eta_hi
        assert curve.eta_hi - curve.eta_lo < 0.12
        assert curve.gof_pvalue > 0.001  # the truth is a power law: no strong rejection
    # The devices' curves really differ: their intervals do not overlap.
    desktop, mobile = big_curve.curve("desktop"), big_curve.curve("mobile")
    assert desktop.eta_hi < mobile.eta_lo


def test_intervals_cover_the_truth_in_most_repetitions():
    """50 seeded worlds: the 95% intervals of theta(p) and eta should cover ~95% of the time."""
    theta_covered, eta_covered = [], []
    for rep in range(50):
        log = make_pbm_log(n_sessions=600, slate=10, randomized_share=1.0, seed=1_000 + rep)
        curve = estimate_from_randomized(log.frame, n_boot=300, seed=rep)
        for device, eta in ETAS.items():
            fitted = curve.curve(device)
            truth = POSITIONS[1:] ** -eta
            lo, hi = np.array(fitted.lo[1:]), np.array(fitted.hi[1:])
            theta_covered.extend((lo <= truth) & (truth <= hi))
            eta_covered.append(fitted.eta_lo <= eta <= fitted.eta_hi)
    assert 0.88 <= np.mean(theta_covered) <= 0.99
    assert 0.86 <= np.mean(eta_covered) <= 1.0


def test_auto_keeps_the_power_law_where_it_fits(big_curve):
    frame = big_curve.to_frame()
    for device in ETAS:
        assert big_curve.curve(device).source == "power_law"
        rows = frame[frame[DEVICE] == device]
        np.testing.assert_allclose(rows["used"], POSITIONS ** -big_curve.curve(device).eta)


def test_auto_switches_to_per_position_when_the_power_law_misfits():
    """A curve with a cliff (the fold of a phone screen) is no power law: the GOF test says so."""

    def cliff(position: np.ndarray, device: np.ndarray) -> np.ndarray:
        return np.where(position <= 4, 1.0, 0.15)

    log = make_pbm_log(n_sessions=12_000, randomized_share=0.5, seed=5, examination=cliff)
    curve = estimate_from_randomized(log.frame, n_boot=300, seed=1)
    truth = np.where(POSITIONS <= 4, 1.0, 0.15)
    for device in ETAS:
        fitted = curve.curve(device)
        assert fitted.gof_pvalue < 0.01
        assert fitted.source == "per_position"
        used = curve.examination(POSITIONS, device)
        np.testing.assert_allclose(used, truth, atol=0.08)
    # Forcing the power law is allowed, and visibly worse here.
    forced = estimate_from_randomized(log.frame, n_boot=50, seed=1, use="power_law")
    used = forced.examination(POSITIONS, "mobile")
    assert np.abs(used - truth).max() > 0.2


def test_examination_is_vectorised_and_positive_beyond_the_estimated_range(big_curve):
    positions = np.array([1, 2, 10, 11, 50, 500])
    devices = np.array(["mobile", "desktop", "tablet", "mobile", "desktop", "tablet"])
    values = big_curve.examination(positions, devices)
    assert values.shape == (6,)
    assert values[0] == 1.0
    assert (values > 0).all()
    eta = {d: big_curve.curve(d).eta for d in ETAS}
    np.testing.assert_allclose(values, positions ** -np.array([eta[d] for d in devices]))
    deep = big_curve.examination(np.arange(10, 40), "mobile")
    assert (np.diff(deep) < 0).all()


def test_per_position_tail_continues_from_the_last_estimate():
    log = make_pbm_log(n_sessions=3_000, randomized_share=1.0, seed=2)
    curve = estimate_from_randomized(log.frame, n_boot=50, use="per_position")
    mobile = curve.curve("mobile")
    values = curve.examination(np.arange(1, 21), "mobile")
    np.testing.assert_allclose(values[:10], mobile.estimate)
    np.testing.assert_allclose(
        values[10:], mobile.estimate[-1] * (np.arange(11, 21) / 10) ** -mobile.eta
    )


def test_device_with_few_sessions_falls_back_to_pooled():
    log = make_pbm_log(n_sessions=3_000, randomized_share=0.5, seed=3)
    frame = log.frame
    # Keep only 40 tablet sessions randomised.
    tablet_sessions = frame.loc[frame[DEVICE] == "tablet", "session_id"].unique()
    drop = frame["session_id"].isin(tablet_sessions[40:]) & frame[RANDOMIZED]
    frame = frame.assign(**{RANDOMIZED: frame[RANDOMIZED] & ~drop})
    curve = estimate_from_randomized(frame, n_boot=100, min_sessions=200, devices=["watch"])
    assert curve.curve("tablet").n_sessions <= 40
    assert curve.curve("tablet").source == "pooled"
    assert curve.curve("watch").n_sessions == 0
    assert curve.curve("watch").source == "pooled"
    assert curve.curve("mobile").source != "pooled"
    pooled = curve.examination(POSITIONS, POOLED)
    np.testing.assert_array_equal(curve.examination(POSITIONS, "tablet"), pooled)
    np.testing.assert_array_equal(curve.examination(POSITIONS, "watch"), pooled)
    assert not np.allclose(curve.examination(POSITIONS, "mobile"), pooled)


def test_unknown_device_is_a_clear_error(big_curve):
    with pytest.raises(ValueError, match=r"unknown device\(s\) \['smart_tv'\]"):
        big_curve.examination(np.array([1, 2]), np.array(["mobile", "smart_tv"]))
    with pytest.raises(ValueError, match="1-based"):
        big_curve.examination(np.array([0, 1]), "mobile")
    with pytest.raises(ValueError, match="whole numbers"):
        big_curve.examination(np.array([1.5]), "mobile")


def test_no_randomised_rows_says_what_to_configure():
    frame = make_pbm_log(n_sessions=200, randomized_share=0.0, seed=4).frame
    with pytest.raises(ValueError, match="no row has randomized=True.*shuffle its top k"):
        estimate_from_randomized(frame)


def test_missing_columns_are_named():
    frame = make_pbm_log(n_sessions=50, seed=4).frame.drop(columns=[RANDOMIZED, CLICKED])
    with pytest.raises(KeyError, match=r"\['clicked', 'randomized'\]"):
        estimate_from_randomized(frame)


def test_bad_values_are_clear_errors():
    frame = make_pbm_log(n_sessions=200, randomized_share=1.0, seed=4).frame
    with pytest.raises(ValueError, match="clicked must be 0/1"):
        estimate_from_randomized(frame.assign(**{CLICKED: 2}))
    with pytest.raises(ValueError, match="1-based"):
        estimate_from_randomized(frame.assign(**{POSITION: frame[POSITION] - 1}))
    with pytest.raises(ValueError, match="use must be"):
        estimate_from_randomized(frame, use="cubic")  # type: ignore[arg-type]


def test_json_round_trip_is_exact_and_strict(big_curve):
    text = big_curve.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    restored = PropensityCurve.from_json(text)
    assert restored == big_curve
    positions = np.arange(1, 30)
    np.testing.assert_array_equal(
        restored.examination(positions, "tablet"), big_curve.examination(positions, "tablet")
    )
    prior = PropensityCurve.from_power_law({"mobile": 1.0}, max_position=5)  # NaN fields
    assert PropensityCurve.from_dict(json.loads(prior.to_json())).curve("mobile").eta == 1.0


def test_reports(big_curve):
    frame = big_curve.to_frame()
    assert len(frame) == 4 * 10
    assert set(frame[DEVICE]) == {*ETAS, POOLED}
    summary = big_curve.summary_frame()
    assert summary.loc["mobile", "n_sessions"] == big_curve.curve("mobile").n_sessions
    markdown = big_curve.to_markdown()
    assert "| mobile |" in markdown and "power_law" in markdown


def test_same_seed_same_curve():
    frame = make_pbm_log(n_sessions=500, randomized_share=1.0, seed=6).frame
    first = estimate_from_randomized(frame, n_boot=100, seed=3)
    assert estimate_from_randomized(frame, n_boot=100, seed=3) == first
    assert estimate_from_randomized(frame, n_boot=100, seed=4) != first


def test_from_power_law_matches_the_formula():
    curve = PropensityCurve.from_power_law({"mobile": 1.0, "desktop": 0.5})
    positions = np.array([1, 4, 16])
    np.testing.assert_allclose(curve.examination(positions, "desktop"), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(curve.examination(positions, "mobile"), [1.0, 0.25, 1 / 16])
    assert pd.isna(curve.curve("mobile").scale)


def test_em_recovers_theta_without_randomisation():
    """EM needs no intervention, only items seen at several positions (the policy's noise)."""
    log = make_pbm_log(n_sessions=8_000, randomized_share=0.0, policy_noise=1.0, seed=7)
    curve = estimate_em(log.frame)
    assert curve.method == "em"
    for device, eta in ETAS.items():
        fitted = curve.curve(device)
        np.testing.assert_allclose(fitted.estimate, POSITIONS**-eta, atol=0.06)
        assert fitted.eta == pytest.approx(eta, abs=0.05)
    # The naive curve (CTR by position on the same logs) is far off: attraction is confounded
    # with position, which is what EM (or randomisation) separates.
    mobile = log.frame[(log.frame[DEVICE] == "mobile") & (log.frame[POSITION] <= 10)]
    ctr = mobile.groupby(POSITION)[CLICKED].mean().to_numpy()
    naive_error = ctr / ctr[0] / POSITIONS**-1.0 - 1
    em_error = np.array(curve.curve("mobile").estimate) / POSITIONS**-1.0 - 1
    assert naive_error[-1] < -0.3  # half the truth at position 10: attractive items sit on top
    assert np.abs(em_error).max() < 0.15


def test_em_names_missing_columns():
    frame = make_pbm_log(n_sessions=50, seed=8).frame.drop(columns=[ITEM_ID])
    with pytest.raises(KeyError, match=r"\['item_id'\]"):
        estimate_em(frame)
