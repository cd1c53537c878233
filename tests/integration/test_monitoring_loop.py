"""The monitoring loop in Dagster, on a real instance at a small scale: monitoring partitions
record alerts, the retraining sensor turns the right alerts into runs once, and a retraining
run over the served traffic registers a new version that the gate judges on served days.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from features.training_set import load_training_set
from models.debiasing import debiased
from models.registry import Registry
from models.scorers import RegisteredScorer
from monitoring.alerts import ALERTS_FILE, Alert, FailedCheck, alerts_dir, read_alerts
from monitoring.monitor import served_days, served_dir, service_log_root
from monitoring.reference import build_reference, reference_dir
from pipelines.definitions import build_definitions
from pipelines.defs.monitoring_assets import served_days as served_days_partitions
from pipelines.defs.sensors import retrain_run_config
from ranklab.settings import DataSettings, Settings, SplitSettings
from simulation.clients import InProcessRanking
from simulation.generator import generate_marketplace
from simulation.scenarios import get_scenario
from simulation.traffic import TrafficPlan, simulate_traffic
from simulation.world import publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# 20 searches a day over 24 days: 7 warm-up, 12 train, 2 valid, 3 test days.
DATA = DataSettings(scale=0.2, n_days=24)
SPLIT = SplitSettings(valid_days=2, test_days=3)
SERVED_DAYS = 5


def _execute(defs, instance, job, **kwargs) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, raise_on_error=False, **kwargs
    )
    assert result.success, f"{job} run failed"
    return result


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    (mat,) = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key.to_user_string() == asset
    ]
    return {k: v.value for k, v in mat.metadata.items()}


def _tick(defs, instance, cursor: str | None):
    sensor = defs.resolve_sensor_def("retraining_sensor")
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
    ) as context:
        return sensor.evaluate_tick(context)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The lifecycle run (champion v1 and its reference), then SERVED_DAYS of traffic with a
    broken price feed, ranked in process by v1 and logged where the service logs."""
    settings = Settings(state_dir=tmp_path_factory.mktemp("loop") / "state", data=DATA, split=SPLIT)
    defs = build_definitions(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        publish(settings)  # the world writes its marketplace where the pipeline reads it
        lifecycle = _execute(defs, instance, "lifecycle")
        registry = Registry(settings)
        champion = _metadata(lifecycle, "candidate_model")["version"]
        if _metadata(lifecycle, "promotion")["decision"] != "champion":
            # Tiny data may not prove v1 better than popularity; this module tests what
            # follows a promotion, so it promotes v1 itself and builds its reference.
            registry.promote_champion(champion, {"gate.decision": "test fixture: tiny data"})
            reference = build_reference(
                debiased(load_training_set(settings), settings),
                RegisteredScorer(registry, champion),
                champion,
            )
            reference.save(reference_dir(settings, champion))
        client = InProcessRanking(
            RegisteredScorer(registry, champion), champion, service_log_root(settings), settings
        )
        plan = TrafficPlan(days=SERVED_DAYS, scenario=get_scenario("broken_feature"), seed=3)
        traffic = simulate_traffic(generate_marketplace(DATA), DATA, plan, client)
        traffic.save(served_dir(settings))
        yield settings, defs, instance, lifecycle, traffic, champion


def test_the_lifecycle_builds_a_reference_for_a_new_champion_only(served):
    settings, _, _, lifecycle, _, champion = served
    reference = _metadata(lifecycle, "monitoring_reference")
    promoted = _metadata(lifecycle, "promotion")["decision"] == "champion"
    assert reference["built"] == promoted
    if promoted:
        assert reference["model_version"] == champion
        assert (reference_dir(settings, champion) / "reference.json").exists()
    else:
        assert reference["reason"] == f"v{champion} not champion"
    materialised = {
        e.step_materialization_data.materialization.asset_key.to_user_string()
        for e in lifecycle.get_asset_materialization_events()
    }
    assert "monitoring_window" not in materialised


def test_a_monitoring_partition_records_the_alert_and_the_sensor_starts_no_retraining(served):
    settings, defs, instance, _, traffic, champion = served
    day = served_days(traffic)[1]
    instance.add_dynamic_partitions(served_days_partitions.name, served_days(traffic))

    run = _execute(defs, instance, "monitoring", partition_key=day)

    meta = _metadata(run, "monitoring_window")
    assert meta["model_version"] == champion and meta["model_share"] == 1.0
    assert "item_price" in meta["data_quality.failed"]
    recorded = read_alerts(settings)
    assert [a.alert_id for a in recorded] == meta["alerts"]
    assert all(a.window_start == f"{day}T00:00:00+00:00" for a in recorded)
    # A broken feed never asks for retraining, not even through its feature-drift alert.
    assert recorded and not any(a.requests_retraining for a in recorded)
    tick = _tick(defs, instance, cursor=None)
    assert not tick.run_requests and "none requests retraining" in tick.skip_message
    assert tick.cursor == recorded[-1].alert_id


def _append_alert(settings: Settings, report: str, day: str, retrain: bool) -> Alert:
    alert = Alert(
        alert_id=f"{report}-{day}T0000-v9",
        report=report,
        model_version="9",
        window_start=f"{day}T00:00:00+00:00",
        window_end=f"{day}T23:59:59+00:00",
        raised_at=f"{day}T23:59:59+00:00",
        failed=[FailedCheck("drift", "item_price", 0.3, 0.1, "moved", f"{day}T00:00:00+00:00")],
        requests_retraining=retrain,
    )
    alerts_dir(settings).mkdir(parents=True, exist_ok=True)
    with (alerts_dir(settings) / ALERTS_FILE).open("a", encoding="utf-8") as log:
        log.write(alert.to_json() + "\n")
    return alert


def test_the_sensor_requests_one_run_for_the_retraining_alerts_of_a_tick_once(served):
    settings, defs, instance, _, _, _ = served
    start = _tick(defs, instance, cursor=None).cursor  # past the alerts of other tests
    drift = _append_alert(settings, "feature_drift", "2030-01-01", retrain=True)
    _append_alert(settings, "data_quality", "2030-01-02", retrain=False)
    quality = _append_alert(settings, "ranking_quality", "2030-01-01", retrain=True)

    tick = _tick(defs, instance, cursor=start)

    # Both retraining alerts would retrain on the same newest data: one run, keyed by the newest.
    assert [r.run_key for r in tick.run_requests] == [quality.alert_id]
    request = tick.run_requests[0]
    assert request.job_name in (None, "retrain")
    assert request.tags["ranklab/first_alert"] == drift.alert_id
    assert request.tags["ranklab/alerts"] == "2"
    assert request.tags["ranklab/retrains_version"] == "9"
    assert request.run_config == retrain_run_config(str(served_dir(settings)))
    assert tick.cursor == quality.alert_id
    # The cursor stops repeats: the next tick sees nothing new.
    again = _tick(defs, instance, cursor=tick.cursor)
    assert not again.run_requests and again.skip_message == "no new monitoring alerts"


def test_a_drills_retraining_alert_without_served_traffic_starts_no_run(tmp_path):
    # `ranklab simulate` records alerts in process and writes no served-traffic ledger: a
    # retraining run would have nothing to read, so the sensor says why instead.
    settings = Settings(state_dir=tmp_path / "state", data=DATA, split=SPLIT)
    defs = build_definitions(settings)
    _append_alert(settings, "feature_drift", "2030-01-01", retrain=True)
    with dg.instance_for_test() as instance:
        tick = _tick(defs, instance, cursor=None)
    assert not tick.run_requests
    assert "no served-traffic ledger" in tick.skip_message
    assert tick.cursor == "feature_drift-2030-01-01T0000-v9"


def _served_days_tick(defs, instance) -> dg.SensorResult | dg.SkipReason:
    """The sensor called directly (as the drift demo does): outside the daemon,
    ``evaluate_tick`` cannot see the partitions its own result adds."""
    sensor = defs.resolve_sensor_def("served_days_sensor")
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        return sensor(context)


def test_the_served_days_sensor_asks_once_for_each_whole_served_day(served):
    _, defs, _, _, traffic, _ = served
    days = served_days(traffic)
    with dg.instance_for_test() as instance:  # no partitions yet (other tests add their own)
        first = _served_days_tick(defs, instance)
        (add,) = first.dynamic_partitions_requests
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
        second = _served_days_tick(defs, instance)  # the daemon added the partitions: nothing new

    assert len(days) == SERVED_DAYS
    assert [r.partition_key for r in first.run_requests] == days
    assert [r.run_key for r in first.run_requests] == [f"served_day:{day}" for day in days]
    assert (add.partitions_def_name, list(add.partition_keys)) == (
        served_days_partitions.name,
        days,
    )
    assert isinstance(second, dg.SkipReason) and "no new served day" in second.skip_message


def test_the_served_days_sensor_waits_for_a_ledger(tmp_path):
    defs = build_definitions(Settings(state_dir=tmp_path / "state", data=DATA, split=SPLIT))
    with dg.instance_for_test() as instance:
        tick = _served_days_tick(defs, instance)
    assert isinstance(tick, dg.SkipReason) and "no served-traffic ledger" in tick.skip_message


def test_a_retraining_run_over_served_traffic_registers_a_version_judged_on_served_days(served):
    settings, defs, instance, _, traffic, champion = served

    run = _execute(
        defs, instance, "retrain", run_config=retrain_run_config(str(served_dir(settings)))
    )

    raw = _metadata(run, "raw_events")
    assert raw["source"] == "simulation+served"
    assert raw["served.requests"] == len(traffic.requests)
    assert raw["rows.sessions"] == len(generate_marketplace(DATA)["sessions"]) + len(
        traffic.requests
    )
    split = _metadata(run, "training_data")
    last_served = (traffic.end - pd.Timedelta(days=1)).date()
    first_test = (traffic.end - pd.Timedelta(days=SPLIT.test_days)).date()
    assert split["test.days"] == f"{first_test} .. {last_served}"
    version = _metadata(run, "candidate_model")["version"]
    assert int(version) > int(champion)
    decision = _metadata(run, "promotion")["decision"]
    assert decision in {"champion", "challenger", "rejected"}
    assert Registry(settings).version(version).tags["gate.decision"] == decision
