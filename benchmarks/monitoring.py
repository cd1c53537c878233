"""Monitoring: false alarms of the control, time to detect each scenario, cost of a window.

    python -m benchmarks.monitoring [--control-days 25] [--scale 1.0] [--state DIR]
    python -m benchmarks.monitoring --loop silent_degradation seasonal_shift [--state DIR]

Builds its own world in ``--state`` (default: a temporary folder): the default marketplace
(``DataSettings()``, 100 searches a day), its training set through the real Feast store, the
candidate model of the line-up (the debiased PyTorch ranker) and its monitoring reference.
Then, with the in-process serving path and one-day windows:

- control: ``--control-days`` days of unchanged traffic; every window with an alert is a
  false alarm (target: at most 1 in 20);
- each scenario: two unchanged days, then the change; time to detect is from the change to
  the first alert of the report that should catch it, in simulated hours (a window's drift
  and quality reports run when it closes, its ranking report once its labels are complete,
  ``LABEL_DELAY`` later);
- cost: wall seconds to evaluate one window of default traffic, all three reports with HTML,
  JSON and the Evidently workspace, measured on every control window.

Results go to ``<state>/reports/monitoring_benchmark.md`` (and ``.json``) and are printed.

``--loop``: instead, the closed loop per scenario, each in its own state folder: the
``make drift-demo`` story (``simulation/drift_demo.py``: lifecycle, the real service over
HTTP, monitoring partitions, the retraining sensor, the retrain run and gate, the swap, more
days). It measures time to detect (change to the first alert that requests retraining,
simulated hours), time to mitigate (the retrain run's start to the service answering with
the promoted model, wall seconds) and the hit rate@10 of the served days before and after.
Written to ``<state>/monitoring_loop.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from benchmarks.world import build_training_world  # noqa: E402
from monitoring.alerts import Alert  # noqa: E402
from monitoring.monitor import WindowResult, monitor_traffic  # noqa: E402
from monitoring.reference import MonitoringReference, build_reference  # noqa: E402
from monitoring.reports import ReportStore  # noqa: E402
from ranklab.io import write_json, write_text  # noqa: E402
from ranklab.settings import DataSettings, Settings, SplitSettings  # noqa: E402
from simulation.clients import InProcessRanking  # noqa: E402
from simulation.scenarios import SCENARIOS, Scenario, get_scenario  # noqa: E402
from simulation.traffic import TrafficPlan, simulate_traffic, traffic_dir  # noqa: E402

CHANGE_DAY = 2  # unchanged days before each scenario starts
DETECTION_DAYS = 3  # days simulated after the change


@dataclass
class World:
    settings: Settings
    tables: dict[str, pd.DataFrame]
    model: object
    reference: MonitoringReference


def build_world(state: Path, scale: float, seed: int) -> World:
    started = time.perf_counter()
    world = build_training_world(state, scale, seed)
    model = world.fit(world.candidate)
    reference = build_reference(world.training_set, model, model_version="1", seed=seed)
    print(
        f"world: {world.candidate} trained and referenced in {time.perf_counter() - started:.0f} s"
    )
    return World(world.settings, world.tables, model, reference)


def run(world: World, plan: TrafficPlan, run_name: str, store: bool):
    # Each run monitors into its own state folder: its own reports, alerts and workspace.
    settings = world.settings.model_copy(update={"state_dir": world.settings.root / run_name})
    log_root = traffic_dir(settings, run_name) / "predictions"
    client = InProcessRanking(world.model, "1", log_root, settings)
    traffic = simulate_traffic(world.tables, settings.data, plan, client)
    store_ = ReportStore(settings) if store else None
    return traffic, monitor_traffic(settings, world.reference, traffic, log_root, store=store_)


def control(world: World, days: int) -> dict[str, object]:
    plan = TrafficPlan(days=days, change_day=days, seed=world.settings.seed)
    _, results = run(world, plan, "control", store=True)
    alarms = [r for r in results if r.alerts]
    seconds = np.array([r.seconds for r in results])
    return {
        "windows": len(results),
        "windows_with_alert": len(alarms),
        "false_alarm_rate": len(alarms) / len(results),
        "alerts": [a.alert_id for r in alarms for a in r.alerts],
        "window_seconds": [round(float(x), 2) for x in seconds],
        "window_seconds_median": float(np.median(seconds)),
        "window_seconds_p90": float(np.quantile(seconds, 0.9)),
        "window_seconds_max": float(seconds.max()),
        "rows_per_window": float(np.mean([r.reports[0].rows for r in results])),
    }


def detection(world: World, name: str) -> dict[str, object]:
    scenario = get_scenario(name)
    plan = TrafficPlan(
        days=CHANGE_DAY + DETECTION_DAYS,
        scenario=scenario,
        change_day=CHANGE_DAY,
        seed=world.settings.seed,
    )
    traffic, results = run(world, plan, name, store=False)
    first = _first_alert(results, scenario.caught_by, traffic.change_at)
    expected = None if first is None else _hours(first.raised_at, traffic.change_at)
    before = [a.alert_id for r in results for a in r.alerts if r.window.end <= traffic.change_at]
    return {
        "scenario": name,
        "caught_by": scenario.caught_by,
        "hours_to_detect": expected,
        "first_window": expected is not None and expected <= 24 + _delay_hours(scenario),
        "failed_columns": [] if first is None else sorted({f.column for f in first.failed}),
        "other_reports": sorted(
            {
                a.report
                for r in results
                for a in r.alerts
                if r.window.start >= traffic.change_at and a.report != scenario.caught_by
            }
        ),
        "alerts_before_change": before,
    }


def _delay_hours(scenario: Scenario) -> float:
    from simulation.traffic import LABEL_DELAY

    return LABEL_DELAY.total_seconds() / 3600 if scenario.caught_by == "ranking_quality" else 0.0


def _first_alert(results: list[WindowResult], report: str, change_at: pd.Timestamp) -> Alert | None:
    """The earliest alert of ``report`` in a window that starts at or after the change."""
    alerts = [
        a for r in results if r.window.start >= change_at for a in r.alerts if a.report == report
    ]
    return min(alerts, key=lambda a: pd.Timestamp(a.raised_at), default=None)


def _hours(raised_at: str, since: pd.Timestamp) -> float:
    return (pd.Timestamp(raised_at) - since).total_seconds() / 3600


def render(control_result: dict[str, object], detections: list[dict[str, object]]) -> str:
    c = control_result
    lines = [
        "# Monitoring benchmark",
        "",
        f"Control: {c['windows_with_alert']} of {c['windows']} one-day windows raised an alert "
        f"(false-alarm rate {c['false_alarm_rate']:.2f}; target at most 0.05).",
        f"Evaluating one window ({c['rows_per_window']:.0f} candidate rows, three reports, HTML, "
        f"JSON, workspace): median {c['window_seconds_median']:.1f} s, "
        f"90th percentile {c['window_seconds_p90']:.1f} s, max {c['window_seconds_max']:.1f} s "
        "(target under 10 s; the first window also pays one-off imports).",
        "",
        "| scenario | caught by | failing columns | hours to detect | in the first window "
        "| other alerts |",
        "|---|---|---|---|---|---|",
    ]
    for d in detections:
        hours = "not detected" if d["hours_to_detect"] is None else f"{d['hours_to_detect']:.0f}"
        lines.append(
            f"| {d['scenario']} | {d['caught_by']} | {', '.join(d['failed_columns'])} | {hours} | "
            f"{'yes' if d['first_window'] else 'no'} | {', '.join(d['other_reports']) or '-'} |"
        )
    return "\n".join(lines) + "\n"


# ---- the closed loop (--loop) ----
LOOP_SPLIT = SplitSettings(valid_days=3, test_days=7)  # what `ranklab drift-demo` uses
LOOP_DAYS = (14, 4)  # served before the sensor ticks, served after retraining


def loop(state: Path, scenario: str, scale: float, seed: int, port: int) -> dict[str, object]:
    from simulation.drift_demo import run_drift_demo

    settings = Settings(
        state_dir=state / f"loop-{scenario}", data=DataSettings(scale=scale), split=LOOP_SPLIT
    )
    settings = settings.model_copy(update={"seed": seed})
    result = run_drift_demo(settings, scenario, *LOOP_DAYS, port=port)
    windows = result.windows
    swapped = windows["model"] != windows["model"].iloc[0]
    quality = windows["hit_rate@10"].astype(float)
    return {
        "scenario": scenario,
        "hours_to_detect": result.detect_hours,
        "retraining_alerts": sum(a.requests_retraining for a in result.alerts),
        "decision": result.decision,
        "retrained_version": result.retrained_version,
        "seconds_to_mitigate": result.mitigate_s,
        "hit_rate_before": float(quality[~swapped].mean()),
        "hit_rate_after": float(quality[swapped].mean()) if swapped.any() else None,
        "days_after": int(swapped.sum()),
        "steps": result.steps,
        "windows": windows.to_dict(orient="records"),
    }


def render_loop(rows: list[dict[str, object]]) -> str:
    lines = [
        "| scenario | hours to detect | retraining alerts | gate | seconds to mitigate "
        "| hit rate@10 served by v1 | after the swap |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        detect = "-" if r["hours_to_detect"] is None else f"{r['hours_to_detect']:.0f}"
        mitigate = "-" if r["seconds_to_mitigate"] is None else f"{r['seconds_to_mitigate']:.0f}"
        after = "-" if r["hit_rate_after"] is None else f"{r['hit_rate_after']:.3f}"
        lines.append(
            f"| {r['scenario']} | {detect} | {r['retraining_alerts']} | "
            f"v{r['retrained_version']} {r['decision']} | {mitigate} | "
            f"{r['hit_rate_before']:.3f} | {after} ({r['days_after']} days) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control-days", type=int, default=25)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--loop", nargs="+", default=None, metavar="SCENARIO")
    parser.add_argument("--port", type=int, default=3002, help="the --loop service's port")
    args = parser.parse_args()
    torch.set_num_threads(2)
    state = args.state or Path(tempfile.mkdtemp(prefix="ranklab-monitoring-"))
    if args.loop:
        rows = [loop(state, name, args.scale, args.seed, args.port) for name in args.loop]
        report = render_loop(rows)
        write_text(report, state / "monitoring_loop.md")
        write_json(rows, state / "monitoring_loop.json")
        print(report)
        return
    world = build_world(state, args.scale, args.seed)
    started = time.perf_counter()
    control_result = control(world, args.control_days)
    detections = [detection(world, name) for name in SCENARIOS if name != "none"]
    print(f"simulated and monitored in {time.perf_counter() - started:.0f} s")
    report = render(control_result, detections)
    reports_dir = world.settings.reports_dir
    write_text(report, reports_dir / "monitoring_benchmark.md")
    write_json(
        {"control": control_result, "scenarios": detections},
        reports_dir / "monitoring_benchmark.json",
    )
    print(report)


if __name__ == "__main__":
    main()
