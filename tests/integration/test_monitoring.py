"""Monitoring end to end at a small scale: a training set from the real Feast store, a
trained model, its reference, and simulated traffic for each drift scenario.

Each scenario must be caught by the report it should trip in the first window after the
change; the control must raise nothing. The benchmark (``benchmarks/monitoring.py``) runs
the same at the default scale over 20+ windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import aggregates
from features.store import apply_definitions, feature_store, online_features
from features.training_set import build_training_set
from models import train
from models.debiasing import debiased
from monitoring.monitor import monitor_traffic
from monitoring.reference import build_reference
from monitoring.reports import ReportStore
from ranklab import schema
from ranklab.settings import DataSettings, Settings
from simulation.clients import InProcessRanking, SnapshotFeatures, online_store_refresh
from simulation.generator import generate_marketplace, window
from simulation.scenarios import get_scenario
from simulation.traffic import RankingRequest, TrafficPlan, simulate_traffic, traffic_dir

pytestmark = pytest.mark.integration

DATA = DataSettings(scale=0.5, n_days=42)  # 50 searches a day; the reference's 14 days settled


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("monitoring") / "state", data=DATA)
    tables = generate_marketplace(DATA)
    aggregates.write_feature_tables(aggregates.compute_feature_tables(tables), settings)
    training_set = build_training_set(settings, tables, apply_definitions(settings))
    # The scikit-learn baseline of the line-up: the suite stays fast; the benchmark serves
    # the promoted candidate (the debiased PyTorch ranker).
    model = train.build_models(training_set, seed=0, progress=False)[train.POINTWISE]
    model.fit(training_set.part("train"))
    reference = build_reference(debiased(training_set, settings), model, model_version="1")
    return settings, tables, training_set, model, reference


def _monitor(world, scenario: str, days: int, change_day: int, run: str):
    settings, tables, _, model, reference = world
    settings = _own_state(settings, run)
    log_root = traffic_dir(settings, run) / "predictions"
    client = InProcessRanking(model, "1", log_root, settings)
    plan = TrafficPlan(days=days, scenario=get_scenario(scenario), change_day=change_day, seed=1)
    traffic = simulate_traffic(tables, DATA, plan, client)
    return traffic, monitor_traffic(settings, reference, traffic, log_root)


def _own_state(settings: Settings, run: str) -> Settings:
    """The world's settings with a state folder of the run's own: its alerts and reports."""
    return settings.model_copy(update={"state_dir": settings.root / "runs" / run})


def test_snapshot_features_equal_feasts_point_in_time_join(world):
    """The in-process path reads the same features as the training set (Feast offline)."""
    _, tables, training_set, _, _ = world
    frame = training_set.frame
    day = frame[schema.EVENT_TIMESTAMP].max().floor("D")
    rows = frame[frame[schema.EVENT_TIMESTAMP] >= day]
    # Entities that first appear during the day have a row at their start instant, which a
    # one-day snapshot at midnight does not hold: compare entities that existed at midnight.
    users = tables["users"].set_index("user_id")["signup_ts"]
    items = tables["items"].set_index("item_id")["launch_ts"]
    rows = rows[
        (users.loc[rows["user_id"]].to_numpy() < day)
        & (items.loc[rows["item_id"]].to_numpy() < day)
    ]
    features = SnapshotFeatures(world[0])
    features.load(aggregates.compute_feature_tables(tables, pd.DatetimeIndex([day])))
    requests = [
        RankingRequest(
            session_id=int(sid),
            ts=group[schema.EVENT_TIMESTAMP].iloc[0],
            user_id=int(group[schema.USER_ID].iloc[0]),
            device=group[schema.DEVICE].iloc[0],
            region=group[schema.REGION].iloc[0],
            query_category=group[schema.QUERY_CATEGORY].iloc[0],
            candidates=group[schema.ITEM_ID].to_numpy(),
        )
        for sid, group in rows.groupby(schema.SESSION_ID, sort=False)
    ]
    looked_up = features.lookup(requests).features
    assert features.feature_columns == training_set.feature_columns
    assert len(looked_up) == len(rows) > 500
    np.testing.assert_allclose(
        looked_up.to_numpy(), rows[training_set.feature_columns].to_numpy(dtype=float), rtol=1e-9
    )


def test_the_http_paths_daily_refresh_serves_the_same_features_online(world):
    """``online_store_refresh`` writes a traffic day's snapshot into the online store; the
    service's reader (Feast's online API) then returns what the in-process path uses."""
    settings, tables, _, _, _ = world
    day = pd.Timestamp(window(DATA)[1])
    snapshot = aggregates.compute_feature_tables(tables, pd.DatetimeIndex([day]))
    store = feature_store(settings)
    online_store_refresh(store)(day, snapshot)
    items = [int(i) for i in tables["items"]["item_id"].iloc[:20]]
    request = RankingRequest(1, day, 3, "mobile", "north", "books", np.array(items))
    features = SnapshotFeatures(settings)
    features.load(snapshot)
    expected = features.lookup([request]).features
    online = online_features(store, 3, items, "books")[features.feature_columns]
    np.testing.assert_allclose(online.to_numpy(dtype=float), expected.to_numpy(), rtol=1e-9)


@pytest.mark.parametrize(
    ("scenario", "report", "columns"),
    [
        ("price_inflation", "feature_drift", {"item_price"}),
        ("seasonal_shift", "feature_drift", {"query_category"}),
        ("traffic_mix", "feature_drift", {"device", "region"}),
        ("broken_feature", "data_quality", {"item_price"}),
        ("silent_degradation", "ranking_quality", {"hit_rate@10"}),
    ],
)
def test_each_scenario_is_caught_in_the_first_window_by_its_report(
    world, scenario, report, columns
):
    _, results = _monitor(world, scenario, days=1, change_day=0, run=scenario)
    (window,) = results
    failing = {c.column for r in window.reports if r.kind == report for c in r.failures}
    assert columns <= failing, f"{scenario}: {report} failed on {failing}"
    assert any(a.report == report for a in window.alerts)
    if scenario == "silent_degradation":  # the features look the same: only labels show it
        assert not window.failed("feature_drift") and not window.failed("data_quality")


def test_the_control_raises_no_alert(world):
    traffic, results = _monitor(world, "none", days=4, change_day=4, run="control")
    assert len(results) == 4
    assert [a.alert_id for r in results for a in r.alerts] == []
    assert not traffic.requests["scenario_active"].any()


def test_a_window_is_saved_for_people_and_for_evidently_ui(world):
    settings, tables, _, model, reference = world
    settings = _own_state(settings, "saved")
    log_root = traffic_dir(settings, "saved") / "predictions"
    plan = TrafficPlan(days=1, scenario=get_scenario("broken_feature"), seed=2)
    traffic = simulate_traffic(tables, DATA, plan, InProcessRanking(model, "1", log_root, settings))
    (result,) = monitor_traffic(settings, reference, traffic, log_root, store=ReportStore(settings))
    (alert,) = [a for a in result.alerts if a.report == "data_quality"]
    assert not alert.requests_retraining
    assert {r.kind for r in result.reports} == {"feature_drift", "data_quality", "ranking_quality"}
    for r in result.reports:
        assert r.paths and all(p.endswith((".html", ".json")) for p in r.paths.values())
    markdown = Path(alert.markdown).read_text(encoding="utf-8")
    assert "| `item_price` |" in markdown and "fix them first" in markdown
