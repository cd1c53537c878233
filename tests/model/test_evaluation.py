"""Bootstrap intervals, paired differences, slices, the evaluation report, calibration, plots."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from models.calibration import calibration
from models.evaluation import (
    Estimate,
    bootstrap_ci,
    evaluate,
    paired_bootstrap_diff,
    session_attributes,
)
from models.metrics import METRICS
from models.plots import plot_reliability, plot_slices, plot_training_curves
from models.slices import slice_table, worst_slice
from ranklab.schema import CLICKED, DEBIASED_LABEL, LABEL, SESSION_ID
from simulation.truth import TRUE_RELEVANCE, TRUE_UTILITY

TRUTH = {TRUE_RELEVANCE: "skip"}  # the grader's gain, as simulation/grading.py passes it


def oracle_scores(frame: pd.DataFrame) -> np.ndarray:
    return frame[TRUE_UTILITY].to_numpy(dtype=float)


# ---- bootstrap ----------------------------------------------------------------------------


def test_bootstrap_is_deterministic_and_seeded():
    values = np.random.default_rng(0).normal(size=500)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    assert bootstrap_ci(values, seed=1).lo != bootstrap_ci(values, seed=2).lo
    estimate = bootstrap_ci(values, seed=1)
    assert estimate.mean == pytest.approx(values.mean())
    assert estimate.lo < estimate.mean < estimate.hi
    assert estimate.n == 500


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(42)
    true_mean = 0.3
    covered = [
        (e := bootstrap_ci(rng.binomial(1, true_mean, size=200), n_boot=400, seed=i)).lo
        <= true_mean
        <= e.hi
        for i in range(300)
    ]
    assert 0.90 <= np.mean(covered) <= 0.98


def test_bootstrap_is_fast_enough_to_run_everywhere():
    values = np.random.default_rng(0).random(1000)
    start = time.perf_counter()
    bootstrap_ci(values, n_boot=1000)
    assert time.perf_counter() - start < 0.5


def test_paired_difference_of_identical_vectors_is_exactly_zero():
    values = np.random.default_rng(0).random(300)
    assert paired_bootstrap_diff(values, values.copy()) == Estimate(0.0, 0.0, 0.0, 300)
    assert not paired_bootstrap_diff(values, values).excludes_zero


def test_pairing_sees_a_small_gain_that_separate_intervals_miss():
    rng = np.random.default_rng(1)
    difficulty = rng.random(400)  # shared by both models: easy and hard sessions
    a = difficulty + 0.02 + 0.01 * rng.normal(size=400)
    b = difficulty
    paired = paired_bootstrap_diff(a, b)
    assert paired.excludes_zero and paired.lo > 0
    separate_a, separate_b = bootstrap_ci(a), bootstrap_ci(b)
    assert separate_a.lo < separate_b.hi  # unpaired intervals overlap


def test_estimate_reads_well():
    assert str(Estimate(0.7123, 0.7011, 0.7234, 840)) == "0.712 [0.701, 0.723] (n=840)"
    assert Estimate(-0.1, -0.2, -0.05, 10).excludes_zero


def test_bootstrap_rejects_nan_and_empty_input():
    with pytest.raises(ValueError, match="contain NaN"):
        bootstrap_ci(np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="non-empty 1-d array"):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="must align by session"):
        paired_bootstrap_diff(np.zeros(3), np.zeros(4))


# ---- slices -------------------------------------------------------------------------------


def slice_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    sessions = pd.Index([f"s{i}" for i in range(130)], name=SESSION_ID)
    device = ["mobile"] * 100 + ["tablet"] * 30
    region = ["north"] * 60 + ["south"] * 70
    values = np.r_[np.full(60, 0.9), np.full(40, 0.5), np.full(30, 0.1)]
    per_session = pd.DataFrame({"ndcg@10": values}, index=sessions)
    attributes = pd.DataFrame({"device": device, "region": region}, index=sessions)
    return per_session, attributes


def test_slice_table_counts_means_and_too_small():
    per_session, attributes = slice_inputs()
    table = slice_table(per_session, attributes, "ndcg@10", ["device", "region"], min_sessions=50)
    rows = table.set_index(["slice", "value"])
    assert rows.loc[("device", "mobile"), "n_sessions"] == 100
    assert rows.loc[("device", "mobile"), "mean"] == pytest.approx(0.74)
    assert rows.loc[("device", "tablet"), "too_small"]  # 30 < 50 sessions
    assert not rows.loc[("region", "south"), "too_small"]
    overall = per_session["ndcg@10"].mean()
    assert rows.loc[("region", "north"), "gap_to_overall"] == pytest.approx(0.9 - overall)
    assert table.groupby("slice")["n_sessions"].sum().eq(130).all()

    worst = worst_slice(table)
    # tablet has the lowest mean (0.1) but is too small to judge; south (0.329) is next.
    assert (worst["slice"], worst["value"]) == ("region", "south")


def test_slice_errors_are_named():
    per_session, attributes = slice_inputs()
    with pytest.raises(KeyError, match=r"lack slice columns \['query_category'\]"):
        slice_table(per_session, attributes, "ndcg@10", ["query_category"])
    with pytest.raises(KeyError, match="3 sessions have no attributes"):
        slice_table(per_session, attributes.iloc[3:], "ndcg@10", ["device"])
    table = slice_table(per_session, attributes, "ndcg@10", ["device"], min_sessions=1000)
    with pytest.raises(ValueError, match="every slice is too small"):
        worst_slice(table)


# ---- the evaluation of one model ----------------------------------------------------------


def test_evaluate_reports_label_debiased_and_extra_gains_with_intervals(click_training_set):
    frame = click_training_set(n_sessions=300, seed=3).part("test")
    slices = ["device", "region"]
    oracle = evaluate(
        frame, oracle_scores(frame), "oracle", slices, seed=0, n_boot=200, extra_gains=TRUTH
    )
    noise = np.random.default_rng(0).random(len(frame))
    random = evaluate(frame, noise, "random", slices, seed=0, n_boot=200, extra_gains=TRUTH)

    assert set(oracle.overall) == {LABEL, DEBIASED_LABEL, TRUE_RELEVANCE}
    assert set(oracle.overall[LABEL]) == set(METRICS)
    assert oracle.overall[TRUE_RELEVANCE]["ndcg@10"].mean == pytest.approx(1.0)
    assert random.primary(TRUE_RELEVANCE).hi < oracle.primary(TRUE_RELEVANCE).lo
    # The debiased estimate (SNIPS DCG@10) also prefers the oracle to a random order; with
    # 50 clicked sessions its intervals are too wide to separate them.
    assert random.primary(DEBIASED_LABEL).mean < oracle.primary(DEBIASED_LABEL).mean
    assert oracle.no_relevant == {LABEL: "skip", DEBIASED_LABEL: "skip", TRUE_RELEVANCE: "skip"}

    # Click labels: sessions without a click are skipped, the same ones for every model.
    clicked_sessions = frame.groupby(SESSION_ID)[CLICKED].max()
    assert oracle.per_session[LABEL].index.equals(random.per_session[LABEL].index)
    assert len(oracle.per_session[LABEL]) == int(clicked_sessions.sum())
    assert set(oracle.slices["slice"]) == set(slices)
    assert len(oracle.slices_by_gain[TRUE_RELEVANCE]) == len(oracle.slices)


def test_evaluate_refuses_an_extra_gain_the_frame_lacks(click_training_set):
    frame = click_training_set(n_sessions=50, seed=3).part("test")
    with pytest.raises(KeyError, match="lacks the gain columns"):
        evaluate(frame, np.zeros(len(frame)), "m", [], seed=0, extra_gains={"nope": "skip"})


def test_evaluate_without_truth_counts_empty_sessions_as_one():
    frame = pd.DataFrame(
        {SESSION_ID: [1, 1, 2, 2], LABEL: [0, 2, 0, 0], "device": ["a", "a", "b", "b"]}
    )
    result = evaluate(frame, np.array([1.0, 0.0, 1.0, 0.0]), "m", ["device"], seed=0, n_boot=50)
    assert set(result.overall) == {LABEL} and set(result.slices_by_gain) == {LABEL}
    assert result.overall[LABEL]["mrr"].mean == pytest.approx((0.5 + 1.0) / 2)


def test_evaluate_says_when_no_session_has_a_click():
    frame = pd.DataFrame({SESSION_ID: [1, 1], LABEL: [0, 0], CLICKED: [0, 0]})
    with pytest.raises(ValueError, match=r"evaluate\(m\): no session has an item with label > 0"):
        evaluate(frame, np.zeros(2), "m", [], seed=0)


def test_session_attributes_need_the_slice_columns():
    frame = pd.DataFrame({SESSION_ID: [1], LABEL: [1]})
    with pytest.raises(KeyError, match=r"lacks slice columns \['device'\]"):
        session_attributes(frame, ["device"])


# ---- calibration and plots ----------------------------------------------------------------


def test_calibration_of_a_perfectly_calibrated_model_is_near_zero():
    rng = np.random.default_rng(0)
    probs = rng.random(200_000)
    frame = pd.DataFrame({CLICKED: rng.random(200_000) < probs})
    table, ece = calibration(frame, probs, n_bins=10)
    assert ece < 0.01
    assert table["n"].sum() == 200_000 and len(table) == 10
    np.testing.assert_allclose(table["observed_ctr"], table["mean_predicted"], atol=0.02)

    _, overconfident_ece = calibration(frame, np.clip(probs * 1.5, 0, 1))
    assert overconfident_ece > 0.15


def test_calibration_rejects_what_is_not_a_probability():
    frame = pd.DataFrame({CLICKED: [0, 1]})
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        calibration(frame, np.array([0.5, 1.2]))
    with pytest.raises(KeyError, match="needs a 'clicked' column"):
        calibration(pd.DataFrame({LABEL: [0, 1]}), np.array([0.5, 0.5]))


def test_plots_write_png_files(tmp_path, click_training_set):
    frame = click_training_set(n_sessions=200, seed=4).part("test")
    evaluations = [
        evaluate(frame, scores, name, ["device"], seed=0, n_boot=50, extra_gains=TRUTH)
        for name, scores in [("oracle", oracle_scores(frame)), ("flat", np.zeros(len(frame)))]
    ]
    slices_png = plot_slices(evaluations, tmp_path / "slices.png", gain=TRUE_RELEVANCE)
    table, ece = calibration(frame, np.full(len(frame), frame[CLICKED].mean()))
    reliability_png = plot_reliability(table, ece, tmp_path / "sub" / "reliability.png")
    history = [{"epoch": e, "train_loss": 1 / e, "valid_ndcg@10": 0.5 + e / 100} for e in (1, 2)]
    curves_png = plot_training_curves({"naive": history, "ipw": history}, tmp_path / "curves.png")
    for png in (slices_png, reliability_png, curves_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5_000
    written = sorted(p.name for p in tmp_path.rglob("*"))
    assert written == ["curves.png", "reliability.png", "slices.png", "sub"]  # no temporary files
