"""The monitoring loop, end to end, from a clean state: what ``ranklab drift-demo`` runs.

1. the ``lifecycle`` job: data, checks, features, models, gate -> champion v1, its reference;
2. the real BentoML service (``serving/launch.py``) serves the champion on a free port;
3. simulated days under a drift scenario go to it over HTTP (``simulation.clients``);
4. one ``monitoring_window`` partition per served day: Evidently reports, alerts;
5. one tick of ``retraining_sensor`` on the real Dagster instance: one run request for
   the alerts that ask for retraining (its data holds every served day);
6. that ``retrain`` run: the same checks and gate, over the raw events plus the served
   traffic; if the candidate wins, ``champion`` moves and the service swaps to it;
7. more simulated days, served by whatever the service now serves, monitored the same way,
   and one more sensor tick, to show whether the new days still ask for retraining.

Each step prints its wall time, and each pipeline run a line per asset; Dagster's event
log and the libraries' output go to ``<state>/logs/drift-demo-<time>.log`` (``verbose``: to
the terminal as well). Everything lives in its own state folder (default
``.state/drift-demo``), deleted at the start: the demo never touches ``make run``'s state.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd

from features.store import feature_store
from models.registry import Registry
from monitoring.alerts import Alert, read_alerts
from monitoring.monitor import served_dir, service_log_root
from pipelines.run import Reporter, dagster_instance, event_log_path, run_output
from ranklab.settings import Settings
from serving.launch import server_command, server_env
from simulation.clients import HttpRanking, online_store_refresh
from simulation.scenarios import get_scenario
from simulation.traffic import Traffic, TrafficPlan, simulate_traffic, world_traffic_dir
from simulation.world import publish

QUALITY = "ranking_quality.hit_rate@10"


# ---- the service, as a child process ----
@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def version(self) -> str | None:
        """The model version the service answers with (``/readyz``), None without a model."""
        detail = httpx.get(f"{self.url}/readyz", timeout=5.0).json()
        return None if detail.get("model") is None else str(detail["model"]["version"])

    def wait_for_version(self, version: str, timeout_s: float = 120.0) -> float:
        """Seconds until the service answers with ``version`` (its alias poll and load)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}")
            try:
                if self.version() == version:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the service did not serve v{version} within {timeout_s:.0f} s")


DEMO_RANDOMIZED_SHARE = 0.1  # of the demo service's requests: the intervention's share


@contextmanager
def running_server(settings: Settings, port: int, log_path: Path) -> Iterator[Server]:
    """``bentoml serve`` over ``settings``' state on 127.0.0.1:``port``, stopped with SIGTERM
    (the graceful path that flushes the prediction log)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server_command(port),
            env=server_env(
                RANKLAB_STATE_DIR=str(settings.root),
                # Each simulated day's features at once, and a prompt log and swap.
                RANKLAB_SERVING__ITEM_CACHE_TTL_SECONDS="0",
                RANKLAB_SERVING__LOG_FLUSH_SECONDS="0.5",
                RANKLAB_SERVING__CHAMPION_POLL_SECONDS="1",
                # The position-bias intervention on a tenth of the requests: the served days
                # a retraining run adds carry randomised sessions of their own.
                RANKLAB_SERVING__RANDOMIZED_SHARE=str(DEMO_RANDOMIZED_SHARE),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(f"http://127.0.0.1:{port}", process)
        try:
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# ---- what the demo measured ----
@dataclass
class DemoResult:
    scenario: str
    steps: list[tuple[str, float]] = field(default_factory=list)
    windows: pd.DataFrame | None = None  # a row per served day: version, quality, alerts
    alerts: list[Alert] = field(default_factory=list)
    change_at: pd.Timestamp | None = None
    decision: str | None = None
    retrained_version: str | None = None
    mitigate_s: float | None = None  # the retrain run starts -> the service serves its model

    @property
    def detect_hours(self) -> float | None:
        """Simulated hours from the change to the first alert that requests retraining."""
        first = next((a for a in self.alerts if a.requests_retraining), None)
        if first is None or self.change_at is None:
            return None
        return (pd.Timestamp(first.raised_at) - self.change_at) / pd.Timedelta(hours=1)


class Steps:
    """Prints each step as it ends, with its wall time, and keeps them."""

    def __init__(self, result: DemoResult, echo) -> None:
        self.result, self.echo = result, echo

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.echo(f"-> {name}")
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.result.steps.append((name, seconds))
        self.echo(f"   done in {seconds:.1f} s")


# ---- the story ----
def run_drift_demo(
    settings: Settings,
    scenario: str,
    days_before: int,
    days_after: int,
    port: int,
    echo=print,
    verbose: bool = False,
    held_warnings=(),
) -> DemoResult:
    """The loop under ``scenario`` (active from the first served day): ``days_before``
    days served by the first champion, retraining, ``days_after`` more days."""
    get_scenario(scenario)  # fail on a wrong name before deleting anything
    if settings.root.exists():
        shutil.rmtree(settings.root)
    log_path = event_log_path(settings, "drift-demo")
    echo(f"event log: {log_path}")
    with run_output(log_path, verbose, held_warnings) as (terminal, log):
        report = Reporter(terminal, log, verbose, indent="   ")
        return _run_demo(settings, scenario, days_before, days_after, port, report)


def _run_demo(settings, scenario, days_before, days_after, port, report: Reporter) -> DemoResult:
    from pipelines.definitions import build_definitions

    def echo(text: str) -> None:  # the terminal, not the log the output is redirected to
        print(text, file=report.terminal, flush=True)

    result = DemoResult(scenario)
    step = Steps(result, echo)
    defs = build_definitions(settings)
    tables = publish(settings)  # the world, whose observable part the pipeline reads
    with dagster_instance(settings) as instance:
        with step("lifecycle: data -> features -> models -> gate"):
            lifecycle = _execute(defs, instance, "lifecycle", report)
            champion = _champion(settings, lifecycle)
            echo(f"   champion: v{champion}")

        with running_server(settings, port, settings.logs_dir / "server.log") as server:
            with step(f"start the service on {server.url}"):
                server.wait_for_version(champion)
            plan = TrafficPlan(days=days_before, scenario=get_scenario(scenario), change_day=0)
            with step(f"serve {days_before} days of {scenario} over HTTP"):
                before = _serve(settings, tables, plan, server, after=None)
            result.change_at = before.change_at
            with step(f"monitor {days_before} served days (one partition each)"):
                windows = _monitor(defs, instance, report)

            with step("retraining sensor: one tick"):
                requests = _tick(defs, instance, echo)
            if requests:
                started = time.monotonic()
                with step(f"retrain run for {requests[-1].run_key}"):
                    run = _execute(
                        defs,
                        instance,
                        "retrain",
                        report,
                        requests[-1].run_config,
                        requests[-1].tags,
                    )
                    result.decision = _decision(run)
                    result.retrained_version = _version(run)
                    echo(f"   gate: v{result.retrained_version} -> {result.decision}")
                if result.decision == "champion":
                    with step("the service swaps to the new champion"):
                        server.wait_for_version(result.retrained_version)
                    result.mitigate_s = time.monotonic() - started

            plan = TrafficPlan(days=days_after, scenario=get_scenario(scenario), change_day=0)
            with step(f"serve {days_after} more days over HTTP"):
                _serve(settings, tables, plan, server, after=before)
            with step(f"monitor the {days_after} new days"):
                windows |= _monitor(defs, instance, report)
            with step("retraining sensor: one more tick (shown, not executed)"):
                _tick(defs, instance, echo)
    result.alerts = read_alerts(settings)
    result.windows = _window_table(windows)
    return result


def _execute(defs, instance, job, report: Reporter, run_config=None, tags=None, partition_key=None):
    # A line per asset for the pipeline runs; the daily monitoring runs print failures only
    # (their step says what they did). The log file and the instance keep every event.
    reporting, loggers = report.job(defs.resolve_job_def(job), asset_lines=partition_key is None)
    run = reporting.execute_in_process(
        instance=instance,
        run_config={**(run_config or {}), **loggers},
        tags=tags,
        partition_key=partition_key,
        raise_on_error=False,
    )
    if not run.success:
        raise RuntimeError(
            f"the {job} run {run.run_id} failed: see the lines above, `make ui` or the event log"
        )
    return run


def _champion(settings: Settings, lifecycle) -> str:
    version = Registry(settings).champion_version()
    if version is None:
        gate = _materialization(lifecycle, "promotion")["summary"]
        raise RuntimeError(f"the lifecycle run promoted no champion, nothing to serve:\n{gate}")
    return str(version.version)


def _serve(settings, tables, plan, server: Server, after: Traffic | None) -> Traffic:
    """Simulate ``plan`` against the service; the ledger of everything served so far is
    saved where monitoring and retraining read it."""
    client = HttpRanking(
        server.url,
        max_requests=50_000,
        max_seconds=1800,
        on_day_start=online_store_refresh(feature_store(settings)),
        log_root=service_log_root(settings),
    )
    traffic = simulate_traffic(tables, settings.data, plan, client, after=after)
    ledger = traffic if after is None else after.followed_by(traffic)
    ledger.save(served_dir(settings), truth_directory=world_traffic_dir(settings, "served"))
    return traffic


def _monitor(defs, instance, report: Reporter) -> dict[str, dict[str, object]]:
    """One tick of ``served_days_sensor``, carried out as the daemon would: the new served
    days become partitions and each one's ``monitoring`` run is executed; each day's
    materialisation metadata."""
    sensor = defs.resolve_sensor_def("served_days_sensor")
    # Called directly: outside the daemon, ``evaluate_tick`` cannot see the partitions that
    # this very result adds, and refuses its run requests.
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return {}
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    days = [request.partition_key for request in result.run_requests or []]
    return {
        day: _materialization(
            _execute(defs, instance, "monitoring", report, partition_key=day), "monitoring_window"
        )
        for day in days
    }


def _tick(defs, instance, echo) -> list[dg.RunRequest]:
    """One evaluation of the retraining sensor, with its stored cursor, as the daemon does."""
    sensor = defs.resolve_sensor_def("retraining_sensor")
    cursor_key = "ranklab/retraining_sensor_cursor"
    cursor = instance.daemon_cursor_storage.get_cursor_values({cursor_key}).get(cursor_key)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
    ) as context:
        data = sensor.evaluate_tick(context)
    if data.cursor:
        instance.daemon_cursor_storage.set_cursor_values({cursor_key: data.cursor})
    for request in data.run_requests or []:
        echo(f"   run request {request.run_key} ({request.tags['ranklab/alert_report']})")
    if data.skip_message:
        echo(f"   skipped: {data.skip_message}")
    return list(data.run_requests or [])


def _materialization(run, asset: str) -> dict[str, object]:
    for event in run.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in mat.metadata.items()}
    raise RuntimeError(f"run {run.run_id} materialised no {asset}")


def _decision(run) -> str:
    return str(_materialization(run, "promotion")["decision"])


def _version(run) -> str:
    return str(_materialization(run, "candidate_model")["version"])


def _window_table(windows: dict[str, dict[str, object]]) -> pd.DataFrame:
    """A row per served day, from its ``monitoring_window`` materialisation."""
    return pd.DataFrame(
        {
            "day": day,
            "model": f"v{meta['model_version']}",
            "hit_rate@10": meta.get(QUALITY),
            "feature_drift": meta.get("feature_drift.failed"),
            "data_quality": meta.get("data_quality.failed"),
            "ranking_quality": meta.get("ranking_quality.failed"),
            "alerts": len(meta.get("alerts") or []),
        }
        for day, meta in windows.items()
    )
