"""A drift drill over the state `make run` left: the champion serves simulated days of
traffic under a named scenario (in process, the service's request path without HTTP), and
every day is monitored against the champion's reference. What `ranklab simulate` runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from features.training_set import load_training_set
from models.debiasing import debiased
from models.registry import Registry
from models.scorers import ChampionScorer
from monitoring.monitor import WindowResult, monitor_traffic
from monitoring.reference import build_reference, reference_dir
from monitoring.reports import ReportStore
from ranklab.settings import Settings
from simulation.clients import InProcessRanking
from simulation.scenarios import get_scenario
from simulation.traffic import TrafficPlan, simulate_traffic, traffic_dir, world_traffic_dir
from simulation.world import load_world


@dataclass
class DrillResult:
    scenario: str
    windows: list[WindowResult]
    seconds: float

    def table(self) -> pd.DataFrame:
        """One row per window: which report failed, and whether an alert was raised."""
        return pd.DataFrame(
            {
                "window": str(w.window.start.date()),
                "feature_drift": "FAIL" if w.failed("feature_drift") else "ok",
                "data_quality": "FAIL" if w.failed("data_quality") else "ok",
                "ranking_quality": "FAIL" if w.failed("ranking_quality") else "ok",
                "alerts": len(w.alerts),
                "seconds": round(w.seconds, 1),
            }
            for w in self.windows
        )


def run_drill(settings: Settings, scenario: str, days: int, change_day: int = 0) -> DrillResult:
    """Simulate ``days`` after the training window with ``scenario`` from ``change_day`` on,
    served by the champion, and monitor every day. Needs the state of `make run`."""
    started = time.perf_counter()
    registry = Registry(settings)
    if registry.champion_version() is None:
        raise RuntimeError("no champion in the registry: run `make run` first")
    champion = ChampionScorer(registry)
    training_set = debiased(load_training_set(settings), settings)
    reference = build_reference(training_set, champion, model_version=champion.version)
    reference.save(reference_dir(settings, champion.version))

    run = f"{scenario}-{days}d-from-{change_day}"
    log_root = traffic_dir(settings, run) / "predictions"
    client = InProcessRanking(champion, champion.version, log_root, settings)
    plan = TrafficPlan(days=days, scenario=get_scenario(scenario), change_day=change_day)
    traffic = simulate_traffic(load_world(settings), settings.data, plan, client)
    traffic.save(traffic_dir(settings, run), truth_directory=world_traffic_dir(settings, run))
    windows = monitor_traffic(settings, reference, traffic, log_root, store=ReportStore(settings))
    return DrillResult(scenario, windows, time.perf_counter() - started)
