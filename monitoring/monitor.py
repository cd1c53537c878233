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

from features.events import REQUEST_ID, TS, ServedTraffic
from monitoring.alerts import Alert, raise_alerts
from monitoring.reference import MonitoringReference, reference_dir
from monitoring.reports import (
    DEFAULT_THRESHOLDS,
    ReportStore,
    Thresholds,
    WindowReport,
    data_quality_report,
    feature_drift_report,
    ranking_quality_report,
)
from monitoring.windows import (
    MODEL_VERSION,
    Window,
    candidate_rows,
    windows_between,
    with_labels,
)
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
    traffic: ServedTraffic,
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


# ---- the served traffic, one day at a time (what the Dagster partitions call) ----
def served_dir(settings: Settings) -> Path:
    """The ledger of the traffic the service answered (requests, shown items, clicks): what
    monitoring joins to the prediction log, and what a retraining run appends to its data."""
    return settings.root / "monitoring" / "served"


def service_log_root(settings: Settings) -> Path:
    """Where the running service writes its prediction log (``serving/runtime.py``)."""
    return settings.root / "predictions"


def served_days(traffic: ServedTraffic) -> list[str]:
    """The days of ``traffic`` as ISO dates: the keys of the monitoring partitions."""
    return days_between(traffic.start, traffic.end)


def days_between(start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    """The whole days in [start, end) as ISO dates (a partial last day is not a day yet)."""
    return [
        f"{w.start:%Y-%m-%d}"
        for w in windows_between(start, end, 24)
        if w.end - w.start == pd.Timedelta(days=1)
    ]


def day_window(day: str) -> Window:
    """The one-day window of a partition key (``YYYY-MM-DD``, UTC)."""
    try:
        start = pd.Timestamp(day, tz="UTC")
    except ValueError as bad:
        raise ValueError(f"monitoring day must be YYYY-MM-DD, got {day!r}") from bad
    if start != start.floor("D"):
        raise ValueError(f"monitoring day must be a date, got {day!r}")
    return Window(start, start + pd.Timedelta(days=1))


@dataclass
class ServedDayResult:
    result: WindowResult
    model_version: str
    model_share: float  # share of the window's requests answered by that version


def monitor_served_day(
    settings: Settings,
    traffic: ServedTraffic,
    predictions_root: Path,
    day: str,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    store: ReportStore | None = None,
) -> ServedDayResult:
    """The reports of one served day, against the reference of the model version that
    answered most of its requests (a day that straddles a swap is judged as the majority
    model's), with the labels known when the day's labels are complete."""
    window = day_window(day)
    if not (traffic.start <= window.start and window.end <= traffic.end):
        raise ValueError(
            f"day {day} is outside the served traffic ({traffic.start:%Y-%m-%d} to "
            f"{traffic.end:%Y-%m-%d}, end excluded)"
        )
    rows = candidate_rows(read_predictions(predictions_root), traffic.requests)
    rows = rows[rows[REQUEST_ID].isin(traffic.requests[REQUEST_ID])]
    versions = rows.loc[window.holds(rows[TS])].drop_duplicates(REQUEST_ID)[MODEL_VERSION]
    if versions.dropna().empty:
        raise ValueError(
            f"no request of {day} in the prediction log at {predictions_root} was answered by "
            "a model: nothing to judge against a model's reference"
        )
    shares = versions.value_counts(normalize=True, dropna=False)
    version = str(versions.dropna().value_counts().index[0])
    reference = MonitoringReference.load(reference_dir(settings, version))
    labels = traffic.labels(as_of=window.labels_complete_at)
    result = monitor_window(settings, reference, rows, window, labels, thresholds, store)
    return ServedDayResult(result, version, float(shares.get(version, 0.0)))
