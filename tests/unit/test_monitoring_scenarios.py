"""Each drift scenario changes exactly what its docstring says, and nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import aggregates
from ranklab.settings import DataSettings
from simulation.click_model import QUALITY, ClickModel
from simulation.generator import generate_marketplace
from simulation.scenarios import (
    SCENARIOS,
    BrokenFeature,
    PriceInflation,
    Scenario,
    SeasonalShift,
    SilentDegradation,
    TrafficMixShift,
    get_scenario,
)


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return generate_marketplace(DataSettings(scale=0.2, n_days=14))


def test_every_scenario_is_built_by_name_and_names_the_report_that_catches_it():
    caught_by = {name: get_scenario(name).caught_by for name in SCENARIOS}
    assert caught_by == {
        "none": "none",
        "seasonal_shift": "feature_drift",
        "price_inflation": "feature_drift",
        "traffic_mix": "feature_drift",
        "broken_feature": "data_quality",
        "silent_degradation": "ranking_quality",
    }
    assert get_scenario("price_inflation").describe()["parameters"] == {"factor": 1.5}


def test_an_unknown_scenario_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown scenario 'heatwave'.*price_inflation"):
        get_scenario("heatwave")


def test_the_control_changes_nothing(world):
    control = Scenario()
    rng = np.random.default_rng(0)
    assert control.items(world["items"]) is world["items"]
    assert control.sessions(world["sessions"], world["users"], rng) is world["sessions"]
    assert control.click_model(ClickModel()) == ClickModel()


def test_price_inflation_multiplies_every_price_and_leaves_the_input_alone(world):
    before = world["items"]["price"].copy()
    inflated = PriceInflation(factor=1.5).items(world["items"])
    np.testing.assert_allclose(inflated["price"], (before * 1.5).round(2))
    pd.testing.assert_series_equal(world["items"]["price"], before)


def test_seasonal_shift_moves_searches_to_the_season_and_raises_their_appeal(world):
    sessions = world["sessions"]
    shifted = SeasonalShift(share=0.6).sessions(sessions, world["users"], np.random.default_rng(0))
    seasonal = ("toys", "sports")
    before = sessions["query_category"].isin(seasonal).mean()
    after = shifted["query_category"].isin(seasonal).mean()
    assert before < 0.3 and after > 0.6  # 60% redrawn into the season, plus those there before
    affinity = SeasonalShift(preference=0.5).click_model(ClickModel()).device_affinity
    assert affinity["tablet"]["toys"] == pytest.approx(0.3 + 0.5)
    assert affinity["mobile"]["fashion"] == ClickModel().device_affinity["mobile"]["fashion"]


def test_traffic_mix_moves_devices_and_brings_users_of_one_region(world):
    shifted = TrafficMixShift().sessions(
        world["sessions"], world["users"], np.random.default_rng(0)
    )
    assert (shifted["device"] == "tablet").mean() == pytest.approx(0.5, abs=0.08)  # 280 sessions
    assert (shifted["region"] == "central").mean() > 0.5
    home = world["users"].set_index("user_id")["region"]
    np.testing.assert_array_equal(home.loc[shifted["user_id"]].to_numpy(), shifted["region"])


def test_traffic_mix_refuses_a_region_nobody_lives_in(world):
    with pytest.raises(ValueError, match="no user lives in region 'atlantis'"):
        TrafficMixShift(region="atlantis").sessions(
            world["sessions"], world["users"], np.random.default_rng(0)
        )


def test_broken_feature_turns_one_column_of_one_table_constant(world):
    days = pd.DatetimeIndex([pd.Timestamp("2026-08-10", tz="UTC")])
    tables = aggregates.compute_feature_tables(world, days)
    broken = BrokenFeature().feature_tables(tables)
    assert (broken["item_attributes"]["item_price"] == 0.0).all()
    assert (tables["item_attributes"]["item_price"] > 0).all()  # the input is untouched
    pd.testing.assert_frame_equal(broken["item_stats"], tables["item_stats"])
    with pytest.raises(ValueError, match="no column 'price' in feature table 'item_stats'"):
        BrokenFeature(table="item_stats", column="price").feature_tables(tables)


def test_silent_degradation_turns_appeal_around_and_nothing_a_feature_reads(world):
    items = world["items"]
    turned = SilentDegradation().items(items)
    np.testing.assert_allclose(turned[QUALITY], -items[QUALITY])
    untouched = [c for c in items.columns if c != QUALITY]
    pd.testing.assert_frame_equal(turned[untouched], items[untouched])
