"""The traffic simulator, in process: the generator's world continued, ranked by a real model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.aggregates import check_raw_tables
from models.popularity import PopularityRanker
from monitoring.windows import candidate_rows
from ranklab.settings import DataSettings, Settings
from serving.prediction_log import read_predictions
from simulation.clients import HttpRanking, InProcessRanking, TrafficBudgetExceeded
from simulation.generator import generate_marketplace, window
from simulation.scenarios import PriceInflation
from simulation.traffic import (
    LABEL_DELAY,
    RankingRequest,
    Traffic,
    TrafficPlan,
    simulate_traffic,
)

DATA = DataSettings(scale=0.2, n_days=28)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_marketplace(DATA)


def _popularity() -> PopularityRanker:
    # The serving fallback: ranks by the item's smoothed 28-day CTR; nothing to learn.
    return PopularityRanker(["item_ctr_28d"]).fit(pd.DataFrame({"item_ctr_28d": [0.05]}))


def _simulate(tmp_path, tables, plan: TrafficPlan, run: str) -> tuple[Traffic, pd.DataFrame]:
    settings = Settings(state_dir=tmp_path / run, data=DATA)
    log_root = tmp_path / run / "predictions"
    client = InProcessRanking(_popularity(), "7", log_root, settings)
    traffic = simulate_traffic(tables, DATA, plan, client)
    return traffic, read_predictions(log_root)


def test_days_after_the_window_are_served_clicked_and_logged(tmp_path, tables):
    traffic, predictions = _simulate(tmp_path, tables, TrafficPlan(days=2, seed=3), "a")

    start = window(DATA)[1]
    assert traffic.start == start and traffic.end == start + pd.Timedelta(days=2)
    assert traffic.requests["ts"].between(start, traffic.end, inclusive="left").all()
    assert traffic.requests["session_id"].min() > tables["sessions"]["session_id"].max()
    assert set(predictions["request_id"]) == set(traffic.requests["request_id"])
    assert (predictions["model_version"] == "7").all()

    # Position 1 is the candidate the model scored highest, as the log records it.
    rows = candidate_rows(predictions, traffic.requests)
    shown = traffic.impressions.merge(rows, on=["request_id", "item_id"], suffixes=("", "_log"))
    assert (shown["position"] == shown["position_log"]).all()
    top = rows[rows["position"] == 1].set_index("request_id")["score"]
    assert (top >= rows.groupby("request_id")["score"].max()).all()

    # Clicks land on shown items, mostly near the top (position bias).
    clicked = traffic.clicks.merge(traffic.impressions, on=["request_id", "item_id"])
    assert len(clicked) == len(traffic.clicks) > 0
    assert clicked["position"].median() <= 5


def test_labels_arrive_with_the_clicks_and_carry_the_training_grades(tmp_path, tables):
    traffic, _ = _simulate(tmp_path, tables, TrafficPlan(days=1, seed=3), "b")
    labels = traffic.labels(as_of=traffic.end + LABEL_DELAY)
    assert len(labels) == len(traffic.impressions)
    assert labels["clicked"].sum() == len(traffic.clicks.drop_duplicates(["request_id", "item_id"]))
    assert set(labels["label"]) <= {0, 1, 2}
    assert (labels["label"] == labels["clicked"] + labels["purchased"]).all()
    before_any_click = traffic.labels(as_of=traffic.start)
    assert before_any_click["clicked"].sum() == 0


def test_the_same_plan_gives_the_same_traffic_and_a_scenario_keeps_the_control_days(
    tmp_path, tables
):
    control, _ = _simulate(tmp_path, tables, TrafficPlan(days=2, seed=5), "c1")
    again, _ = _simulate(tmp_path, tables, TrafficPlan(days=2, seed=5), "c2")
    pd.testing.assert_frame_equal(control.impressions, again.impressions)

    plan = TrafficPlan(days=2, scenario=PriceInflation(factor=1.5), change_day=1, seed=5)
    changed, predictions = _simulate(tmp_path, tables, plan, "c3")
    first_day = control.requests["ts"] < control.start + pd.Timedelta(days=1)
    assert first_day.sum() > 10
    assert not changed.requests["scenario_active"][first_day].any()
    assert changed.requests["scenario_active"][~first_day].all()
    pd.testing.assert_frame_equal(
        control.requests.loc[first_day, ["session_id", "user_id", "query_category"]],
        changed.requests.loc[first_day, ["session_id", "user_id", "query_category"]],
    )
    # From the change on, every item is served at half as much again its price.
    rows = candidate_rows(predictions, changed.requests)
    day = rows["ts"] >= changed.change_at
    price = rows.groupby([day, "item_id"])["item_price"].first().unstack(level=0).dropna()
    np.testing.assert_allclose(price[True], (price[False] * 1.5).round(2), rtol=1e-6)


def test_the_ledger_round_trips_and_extends_the_raw_tables(tmp_path, tables):
    traffic, _ = _simulate(tmp_path, tables, TrafficPlan(days=1, seed=1), "d")
    traffic.save(tmp_path / "ledger", truth_directory=tmp_path / "world")
    loaded = Traffic.load_world(tmp_path / "world")
    pd.testing.assert_frame_equal(loaded.clicks, traffic.clicks)
    assert loaded.change_at == traffic.change_at

    extended = traffic.extend(tables)
    check_raw_tables(extended)  # the raw contract: a retraining run can read it
    assert len(extended["sessions"]) == len(tables["sessions"]) + len(traffic.requests)
    assert list(extended["impressions"].columns) == list(tables["impressions"].columns)
    with pytest.raises(FileNotFoundError, match="no simulated traffic"):
        Traffic.load_world(tmp_path / "nothing")


def test_plans_are_checked_before_anything_runs():
    with pytest.raises(ValueError, match="days must be at least 1"):
        TrafficPlan(days=0)
    with pytest.raises(ValueError, match=r"change_day must lie in \[0, days=3\]"):
        TrafficPlan(days=3, change_day=4)
    with pytest.raises(ValueError, match="sessions_per_day must be > 0"):
        TrafficPlan(days=3, sessions_per_day=0)


def test_http_traffic_goes_to_loopback_only_and_within_its_budget():
    with pytest.raises(ValueError, match="loopback only"):
        HttpRanking("http://10.1.2.3:3000")
    with pytest.raises(ValueError, match="loopback only"):
        HttpRanking("https://example.com")
    client = HttpRanking("http://127.0.0.1:9", max_requests=1)  # port 9: nothing listens
    request = RankingRequest(
        session_id=1,
        ts=pd.Timestamp("2026-10-01", tz="UTC"),
        user_id=1,
        device="mobile",
        region="north",
        query_category="books",
        candidates=np.array([1, 2]),
    )
    with pytest.raises(TrafficBudgetExceeded, match="pass the cap of 1"):
        client.rank([request, request])  # refused before anything is sent
    client.close()
