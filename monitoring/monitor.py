"""Monitoring one window, or every window of a simulation: the functions Dagster and the CLI call.

For a window that has closed: read its requests from the prediction log, run the feature
drift and data quality reports; once its labels are complete (``LABEL_DELAY`` after it
closes), run the ranking quality report; turn failed critical checks into alerts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from monitoring.alerts import Alert, raise_alerts
from monitoring.reference import MonitoringReference
from monitoring.reports import (
    DEFAULT_THRESHOLDS,
    ReportStore,
    Thresholds,
    WindowReport,
    data_quality_report,
    feature_drift_report,
    ranking_quality_report,
)
from monitoring.traffic import TS, Traffic
from monitoring.windows import Window, candidate_rows, windows_between, with_labels
from ranklab.settings import Settings
from serving.prediction_log import read_predictions


@dataclass
class WindowResult:
    window: Window
    reports: list[WindowReport]
    alerts: list[Alert] = field(default_factory=list)
    seconds: float = 0.0

    def failed(self, kind: str) -> bool:
        return any(r.kind == kind and r.failures for r in self.reports)


def monitor_window(
    settings: Settings,
    reference: MonitoringReference,
    rows: pd.DataFrame,
    window: Window,
    labels: pd.DataFrame | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    store: ReportStore | None = None,
) -> WindowResult:
    """The reports of ``window`` over candidate rows (``candidate_rows``) and, when given,
    the labels known once the window's labels are complete; alerts for their failures."""
    started = time.perf_counter()
    current = rows[window.holds(rows[TS])]
    reports = [
        feature_drift_report(current, reference, window, thresholds, store),
        data_quality_report(current, reference, window, thresholds, store),
    ]
    if labels is not None:
        labelled = with_labels(current, labels)
        reports.append(ranking_quality_report(labelled, reference, window, thresholds, store))
    alerts = raise_alerts(reports, reference.model_version, settings)
    return WindowResult(window, reports, alerts, time.perf_counter() - started)


def monitor_traffic(
    settings: Settings,
    reference: MonitoringReference,
    traffic: Traffic,
    predictions_root: Path,
    hours: float = 24,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    store: ReportStore | None = None,
) -> list[WindowResult]:
    """Every window of a simulation, in order, each with its labels as of its completion."""
    rows = candidate_rows(read_predictions(predictions_root), traffic.requests)
    return [
        monitor_window(
            settings,
            reference,
            rows,
            window,
            traffic.labels(as_of=window.labels_complete_at),
            thresholds,
            store,
        )
        for window in windows_between(traffic.start, traffic.end, hours)
    ]
