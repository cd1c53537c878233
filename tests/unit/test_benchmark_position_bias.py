"""The position-bias benchmark's quick path on tiny data: table structure and invariants that
a wrong computation would break (not its numbers, which belong to the README run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks import position_bias as pb
from ranklab.schema import DEVICES
from ranklab.settings import DataSettings
from simulation.click_model import ClickModel

TINY = DataSettings(n_users=600, n_items=300, sessions_per_day=40)  # 2,400 sessions, 60 days


@pytest.fixture(scope="module")
def config() -> pb.BenchConfig:
    quick = pb.BenchConfig.quick(data=TINY)
    return pb.BenchConfig(
        data=TINY,
        seed=quick.seed,
        sweep=(250, 1_000),
        sweep_seeds=(1,),
        n_reps=8,
        position_bias=quick.position_bias,
    )


@pytest.fixture(scope="module")
def results(config: pb.BenchConfig) -> pb.Results:
    return pb.run(config)


def test_curve_table_covers_every_device_and_position(results: pb.Results) -> None:
    curve = results.curve
    assert len(curve) == len(DEVICES) * pb.N_POSITIONS
    assert set(curve["device"]) == set(DEVICES)
    top = curve[curve["position"] == 1]
    # The truth is relative to the top, and so is the RandTop-k ratio (clicks at 1 / clicks at 1).
    np.testing.assert_allclose(top["true"], 1.0)
    assert top["RandTop-k [95% CI]"].str.startswith("1.000").all()
    np.testing.assert_allclose(top["rel. error RandTop-k"], 0.0)
    assert (curve["true"].diff()[curve["position"] > 1] < 0).all()  # examination falls


def test_true_curve_matches_the_click_model() -> None:
    click_model = ClickModel()
    positions = np.arange(1, 31)
    for device in DEVICES:
        devices = np.full(len(positions), device)
        np.testing.assert_allclose(
            pb.true_curve(click_model).examination(positions, devices),
            click_model.examination(positions, devices),
        )


def test_sweep_reports_every_size_and_seed(results: pb.Results, config: pb.BenchConfig) -> None:
    assert results.sweep["n"].tolist() == list(config.sweep)
    assert set(results.needed) == {
        (e, s) for e in ("RandTop-k", "power law") for s in config.sweep_seeds
    }
    assert (results.sweep.drop(columns="n") >= 0).all().all()


def test_sessions_needed_wants_every_later_size_within_tolerance() -> None:
    sizes = [100, 200, 400, 800]
    assert pb.sessions_needed(pd.Series([0.5, 0.05, 0.2, 0.08]), sizes) == 800
    assert pb.sessions_needed(pd.Series([0.5, 0.09, 0.05, 0.01]), sizes) == 200
    assert pb.sessions_needed(pd.Series([0.5, 0.2, 0.2, np.inf]), sizes) is None


def test_randomisation_costs_clicks_in_proportion_to_its_share(results: pb.Results) -> None:
    randomized, overall = results.cost.iloc[0], results.cost.iloc[1]
    # A policy that knows item quality beats a uniform shuffle of its own top 10.
    assert randomized["clicks lost per 1,000 sessions"] > 0
    # Sessions that were not shuffled lose nothing, so the overall loss is the randomised
    # sessions' loss times their share.
    share = randomized["n"] / overall["n"]
    assert overall["clicks lost per 1,000 sessions"] == pytest.approx(
        share * randomized["clicks lost per 1,000 sessions"]
    )


def test_debiased_estimators_order_models_better_than_raw_clicks(results: pb.Results) -> None:
    table = results.estimators.set_index(["estimator", "curve"])
    assert set(table.index) == {
        ("raw_ndcg", pb.NO_CURVE),
        *((e, c) for e in ("ips_ndcg", "ips_dcg", "snips") for c in ("true", "estimated")),
    }
    agree = "pairs agree, DCG@10 attraction (%)"
    assert table[agree].between(0, 100).all()
    # The old ranker showed dear items on top: raw clicks credit models that copy it.
    assert table.at[("snips", "estimated"), agree] >= table.at[("raw_ndcg", pb.NO_CURVE), agree]
    assert table.at[("snips", "true"), agree] >= table.at[("raw_ndcg", pb.NO_CURVE), agree]


def test_run_is_deterministic(results: pb.Results, config: pb.BenchConfig) -> None:
    again = pb.run(config)
    pd.testing.assert_frame_equal(again.estimators, results.estimators)
    pd.testing.assert_frame_equal(again.curve, results.curve)


def test_report_section_replaces_itself(results: pb.Results, config, tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nkept\n", encoding="utf-8")
    section = pb.report(results, config, "python -m benchmarks.position_bias --quick", 1.0)
    pb.write_section(readme, section)
    pb.write_section(readme, section)
    text = readme.read_text(encoding="utf-8")
    assert text.count(pb.SECTION_START) == 1 and text.count(pb.SECTION_END) == 1
    assert text.startswith("# title\n\nkept\n")
    for heading in ("### 1.", "### 2.", "### 3."):
        assert heading in text
