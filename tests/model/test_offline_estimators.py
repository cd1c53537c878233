"""Debiased offline metrics (``models/offline_estimators.py``) on synthetic PBM click logs.

The lesson these tests pin down: on logs where the logging policy decided what users
examined, raw-click NDCG prefers a model that copies the logging policy, while the
propensity-weighted estimators prefer the model that ranks by what users actually want.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pbm_logs import ETAS, make_pbm_log

from models import offline_estimators as oe
from models.metrics import per_session_metrics
from models.propensity import PropensityCurve
from ranklab.schema import CLICKED, DEVICE, LABEL, POSITION, SESSION_ID

TRUE_CURVE = PropensityCurve.from_power_law(ETAS)


@pytest.fixture(scope="module")
def confounded():
    """Logs of a noisy logging policy, no randomisation: the usual production log."""
    log = make_pbm_log(n_sessions=6_000, randomized_share=0.0, policy_noise=1.5, seed=21)
    copy_policy = -log.frame[POSITION].to_numpy(dtype=float)  # the logged order itself
    return log, copy_policy, log.alpha


def test_raw_clicks_prefer_copying_the_logging_policy(confounded):
    log, copy_policy, by_alpha = confounded
    diff = oe.paired_diff(log.frame, by_alpha, copy_policy, TRUE_CURVE, "raw_ndcg", n_boot=300)
    assert diff.hi < -0.03  # raw NDCG says: copying the old ranker is better


@pytest.mark.parametrize("estimator", ["snips", "ips_dcg"])
def test_debiased_estimators_prefer_ranking_by_attraction(confounded, estimator):
    log, copy_policy, by_alpha = confounded
    diff = oe.paired_diff(log.frame, by_alpha, copy_policy, TRUE_CURVE, estimator, n_boot=300)
    assert diff.lo > 0


def test_ips_ndcg_moves_toward_the_truth_but_one_click_sessions_keep_their_bias(confounded):
    log, copy_policy, by_alpha = confounded
    a = oe.per_session_estimates(log.frame, by_alpha, TRUE_CURVE)
    b = oe.per_session_estimates(log.frame, copy_policy, TRUE_CURVE)
    diff = a - b
    # Overall: much closer to "by_alpha wins" than raw NDCG is.
    assert diff["ips_ndcg"].mean() - diff["raw_ndcg"].mean() > 0.04
    n_clicks = log.frame.groupby(SESSION_ID, sort=False)[CLICKED].sum()
    multi, single = (n_clicks >= 2).to_numpy(), (n_clicks == 1).to_numpy()
    # Sessions with several clicks: the weights decide, and the truth wins.
    assert diff["ips_ndcg"][multi].mean() > 0.02
    # One click: DCG and ideal DCG scale with the same weight, which cancels.
    np.testing.assert_allclose(a["ips_ndcg"][single], a["raw_ndcg"][single])


def test_snips_of_the_truth_is_higher_and_has_an_interval(confounded):
    log, copy_policy, by_alpha = confounded
    truth = oe.snips(log.frame, by_alpha, TRUE_CURVE, n_boot=300)
    copy = oe.snips(log.frame, copy_policy, TRUE_CURVE, n_boot=300)
    assert truth.lo < truth.mean < truth.hi
    assert copy.hi < truth.lo
    paired = oe.paired_diff(log.frame, by_alpha, copy_policy, TRUE_CURVE, "snips", n_boot=300)
    assert paired.mean == pytest.approx(truth.mean - copy.mean)
    # Pairing removes the shared session noise: tighter than the two intervals side by side.
    assert paired.hi - paired.lo < (truth.hi - truth.lo) + (copy.hi - copy.lo)


def test_ips_dcg_is_unbiased_for_the_dcg_of_attraction():
    """Same sessions, fresh clicks 400 times: the mean IPS DCG is the true DCG of alpha."""
    log = make_pbm_log(n_sessions=250, randomized_share=0.0, seed=31)
    frame = log.frame.copy()
    scores = log.alpha + np.random.default_rng(0).normal(0, 0.2, size=len(frame))  # a model
    codes, _ = pd.factorize(frame[SESSION_ID], sort=False)
    lam = oe.discount(oe.model_ranks(codes, scores))
    true_dcg = np.bincount(codes, weights=log.alpha * lam).mean()

    rng = np.random.default_rng(1)
    ips, naive = [], []
    for _ in range(400):
        clicks = (rng.random(len(frame)) < log.theta * log.alpha).astype(int)
        frame[CLICKED], frame[LABEL] = clicks, clicks
        table = oe.per_session_estimates(frame, scores, TRUE_CURVE, max_weight=None)
        ips.append(table["ips_dcg"].mean())
        naive.append(np.bincount(codes, weights=clicks * lam).mean())
    ips, naive = np.array(ips), np.array(naive)
    standard_error = ips.std(ddof=1) / np.sqrt(len(ips))
    assert abs(ips.mean() - true_dcg) < 3 * standard_error
    assert abs(ips.mean() - true_dcg) < 0.02 * true_dcg
    # Without the weights the same clicks underestimate it badly: the test can fail.
    assert true_dcg - naive.mean() > 20 * standard_error


def test_session_series_for_the_gate(confounded):
    log, copy_policy, _ = confounded
    frame = log.frame
    has_click = frame.groupby(SESSION_ID, sort=False)[LABEL].max() > 0
    for estimator in ("raw_ndcg", "ips_ndcg"):
        series = oe.debiased_session_metric(frame, copy_policy, TRUE_CURVE, estimator)
        assert series.index.name == SESSION_ID
        assert not series.isna().any()
        assert list(series.index) == list(has_click.index[has_click])  # click-less: dropped
    for estimator in ("ips_dcg", "snips"):
        series = oe.debiased_session_metric(frame, copy_policy, TRUE_CURVE, estimator)
        assert len(series) == frame[SESSION_ID].nunique()  # click-less: kept, as 0
        assert (series[~has_click.to_numpy()] == 0).all()
    snips_series = oe.debiased_session_metric(frame, copy_policy, TRUE_CURVE, "snips")
    assert snips_series.mean() == pytest.approx(oe.snips(frame, copy_policy, TRUE_CURVE).mean)
    raw = per_session_metrics(frame, copy_policy, LABEL)["ndcg@10"].dropna()
    np.testing.assert_allclose(
        oe.debiased_session_metric(frame, copy_policy, TRUE_CURVE, "raw_ndcg"), raw
    )


def test_without_position_bias_ips_equals_raw():
    log = make_pbm_log(n_sessions=300, randomized_share=0.0, seed=41)
    flat = PropensityCurve.from_power_law(dict.fromkeys(ETAS, 0.0))
    table = oe.per_session_estimates(log.frame, log.policy_score, flat)
    np.testing.assert_allclose(table["ips_ndcg"], table["raw_ndcg"])


def test_hand_computed_session():
    """One mobile session (theta = 1/p), three items; the model reverses the logged order."""
    frame = pd.DataFrame(
        {
            SESSION_ID: ["s", "s", "s"],
            POSITION: [1, 2, 4],
            DEVICE: "mobile",
            CLICKED: [1, 0, 1],
            LABEL: [1, 0, 2],
        }
    )
    scores = np.array([0.0, 1.0, 2.0])  # model ranks: position-4 item 1st, then 2, then 1
    table = oe.per_session_estimates(frame, scores, TRUE_CURVE, max_weight=None).iloc[0]
    # weights 1, 2, 4; model ranks 3, 2, 1; lambda = 1/log2(1 + rank)
    ips_dcg = 1 * 1 / np.log2(4) + 1 * 4 / np.log2(2)
    assert table["ips_dcg"] == pytest.approx(ips_dcg)
    assert table["snips_denominator"] == pytest.approx(1 + 4)
    # IPS NDCG: gains label * w = 1, 0, 8 at model ranks 3, 2, 1; ideal order 8, 1, 0.
    assert table["ips_ndcg"] == pytest.approx((8 + 1 / np.log2(4)) / (8 + 1 / np.log2(3)))
    # Raw NDCG: gains 1, 0, 2 at the same ranks; ideal order 2, 1, 0.
    assert table["raw_ndcg"] == pytest.approx((2 + 1 / np.log2(4)) / (2 + 1 / np.log2(3)))
    capped = oe.per_session_estimates(frame, scores, TRUE_CURVE, max_weight=3.0).iloc[0]
    assert capped["snips_denominator"] == pytest.approx(1 + 3)
    assert oe.snips(frame, scores, TRUE_CURVE, max_weight=None).mean == pytest.approx(ips_dcg / 5)


def test_bad_input_is_a_clear_error():
    log = make_pbm_log(n_sessions=30, randomized_share=0.0, seed=51)
    frame, scores = log.frame, log.alpha
    with pytest.raises(KeyError, match=r"\['device'\]"):
        oe.per_session_estimates(frame.drop(columns=[DEVICE]), scores, TRUE_CURVE)
    with pytest.raises(ValueError, match="one score per row"):
        oe.per_session_estimates(frame, scores[:-1], TRUE_CURVE)
    with pytest.raises(ValueError, match="NaN"):
        oe.per_session_estimates(frame, np.full(len(frame), np.nan), TRUE_CURVE)
    with pytest.raises(ValueError, match="unknown estimator 'ndcg'"):
        oe.debiased_session_metric(frame, scores, TRUE_CURVE, "ndcg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown device\(s\) \['watch'\]"):
        oe.per_session_estimates(frame.assign(**{DEVICE: "watch"}), scores, TRUE_CURVE)
    no_clicks = frame.assign(**{CLICKED: 0, LABEL: 0})
    with pytest.raises(ValueError, match="no click"):
        oe.snips(no_clicks, scores, TRUE_CURVE)
    with pytest.raises(ValueError, match="no session has a click"):
        oe.debiased_session_metric(no_clicks, scores, TRUE_CURVE, "ips_ndcg")
