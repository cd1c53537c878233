"""Alert rules: a report with a failed critical check becomes an alert a person can act on.

Each alert is written twice under ``settings.root/monitoring/alerts/``:

- a JSON line appended to ``alerts.jsonl`` (the log a sensor or a dashboard reads);
- ``<alert_id>.md``: what failed, by how much, since which window, the reports to open and
  the runbook section to follow (``docs/runbooks/drift-alert.md``).

and returned as an ``Alert``. Whether it asks for retraining depends on what failed:

- feature drift and ranking quality: the world moved and the model has not; retraining on
  the newest data is the fix, so ``requests_retraining`` is True (the Dagster sensor turns
  it into a run of the training job; the candidate still has to pass the promotion gate).
- data quality: the inputs are broken. Retraining would teach the model the breakage, so it
  is never requested, not even by a drift or quality alert of the same window (a broken
  feed drifts too); the runbook says to fix the feed first.

The alert id is ``<report>-<window start>-v<model version>``: raising the alerts of a
window twice writes them once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from monitoring.reports import CheckResult, ReportKind, WindowReport
from ranklab.io import write_text
from ranklab.settings import Settings

RUNBOOK = "docs/runbooks/drift-alert.md"
RUNBOOK_SECTIONS: dict[ReportKind, str] = {
    "feature_drift": "#feature-drift",
    "data_quality": "#data-quality",
    "ranking_quality": "#ranking-quality",
}
RETRAIN_ON: tuple[ReportKind, ...] = ("feature_drift", "ranking_quality")
ALERTS_FILE = "alerts.jsonl"


@dataclass(frozen=True)
class FailedCheck:
    """A failed critical check and the first window of its current run of failures."""

    check: str
    column: str
    value: float
    threshold: float
    description: str
    failing_since: str  # ISO start of the first consecutive window it failed in


@dataclass(frozen=True)
class Alert:
    alert_id: str
    report: ReportKind
    model_version: str
    window_start: str
    window_end: str
    raised_at: str  # when the report could run: window end, or when its labels arrived
    failed: list[FailedCheck] = field(default_factory=list)
    requests_retraining: bool = False
    runbook: str = RUNBOOK
    report_html: str | None = None
    markdown: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Alert:
        document = json.loads(line)
        document["failed"] = [FailedCheck(**f) for f in document["failed"]]
        return cls(**document)


def alerts_dir(settings: Settings) -> Path:
    return settings.root / "monitoring" / "alerts"


def read_alerts(settings: Settings) -> list[Alert]:
    """Every alert raised so far, oldest first."""
    path = alerts_dir(settings) / ALERTS_FILE
    if not path.exists():
        return []
    return [Alert.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def raise_alerts(
    reports: Sequence[WindowReport], model_version: str, settings: Settings
) -> list[Alert]:
    """An alert per report with a failed critical check, recorded (JSON line and markdown)
    the first time; returns the alerts of these reports, as recorded."""
    history = read_alerts(settings)
    known = {a.alert_id: a for a in history}
    broken_inputs = {a.window_start for a in history if a.report == "data_quality"} | {
        r.window.start.isoformat() for r in reports if r.kind == "data_quality" and r.failures
    }
    alerts = []
    for report in reports:
        if not report.failures:
            continue
        retrain = report.kind in RETRAIN_ON and report.window.start.isoformat() not in broken_inputs
        alert = _alert(report, model_version, history, retrain)
        if alert.alert_id in known:
            alerts.append(known[alert.alert_id])  # raised before: as it was recorded
            continue
        alert = _record(alert, report, settings)
        history.append(alert)
        known[alert.alert_id] = alert
        alerts.append(alert)
    return alerts


def _alert(
    report: WindowReport, model_version: str, history: Sequence[Alert], retrain: bool
) -> Alert:
    window = report.window
    raised_at = window.labels_complete_at if report.kind == "ranking_quality" else window.end
    return Alert(
        alert_id=f"{report.kind}-{window.name}-v{model_version}",
        report=report.kind,
        model_version=str(model_version),
        window_start=window.start.isoformat(),
        window_end=window.end.isoformat(),
        raised_at=raised_at.isoformat(),
        failed=[_with_history(c, report, model_version, history) for c in report.failures],
        requests_retraining=retrain,
        report_html=report.paths.get("html"),
    )


def _with_history(
    check: CheckResult, report: WindowReport, model_version: str, history: Sequence[Alert]
) -> FailedCheck:
    """The check, with the start of the run of consecutive windows it has failed in."""
    since = report.window.start
    earlier = {
        pd.Timestamp(a.window_end): a
        for a in history
        if a.report == report.kind and a.model_version == str(model_version)
    }
    while since in earlier and any(
        f.check == check.check and f.column == check.column for f in earlier[since].failed
    ):
        since = pd.Timestamp(earlier[since].window_start)
    return FailedCheck(
        check=check.check,
        column=check.column,
        value=check.value,
        threshold=check.threshold,
        description=check.description,
        failing_since=since.isoformat(),
    )


def _record(alert: Alert, report: WindowReport, settings: Settings) -> Alert:
    directory = alerts_dir(settings)
    markdown = directory / f"{alert.alert_id}.md"
    write_text(render_markdown(alert, report), markdown)
    alert = Alert(**{**asdict(alert), "failed": alert.failed, "markdown": str(markdown)})
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ALERTS_FILE).open("a", encoding="utf-8") as log:
        log.write(alert.to_json() + "\n")  # one short line per alert: appends do not interleave
    return alert


_TITLES: dict[ReportKind, str] = {
    "feature_drift": "Feature drift",
    "data_quality": "Data quality",
    "ranking_quality": "Ranking quality dropped",
}
# What each check measures, and what a passing value must be relative to its threshold.
_CHECKS: dict[str, tuple[str, str]] = {
    "drift": ("distribution moved (drift score)", "<"),
    "missing": ("share of missing values", "<="),
    "out_of_range": ("share of values outside the training range", "<="),
    "spread": ("standard deviation (collapsed to a constant?)", ">="),
    "new_category": ("values never seen in training", "<="),
    "fallback_share": ("share of requests the model did not answer", "<="),
    "quality": ("mean per search, from click labels", ">="),
    "traffic": ("requests answered by the model", ">="),
}


def render_markdown(alert: Alert, report: WindowReport) -> str:
    """The alert as a person reads it: what, how much, since when, what to do."""
    section = RUNBOOK_SECTIONS[alert.report]
    retrain = "yes" if alert.requests_retraining else "no: the inputs are broken, fix them first"
    lines = [
        f"# {_TITLES[alert.report]}: ranker v{alert.model_version}",
        "",
        f"- window: {alert.window_start} to {alert.window_end} ({report.rows} rows)",
        f"- raised at: {alert.raised_at}",
        f"- runbook: `{alert.runbook}{section}` (in the repository)",
        f"- report: {alert.report_html or 'not saved'}",
        f"- retraining requested: {retrain}",
        "",
        "| what | column | value | must be | failing since |",
        "|---|---|---|---|---|",
    ]
    for failed in alert.failed:
        words, relation = _CHECKS.get(failed.check, (failed.check, "?"))
        lines.append(
            f"| {words} | `{failed.column}` | {failed.value:.4g} "
            f"| {relation} {failed.threshold:.4g} | {failed.failing_since} |"
        )
    if report.warnings:
        lines += ["", "Warnings in the same report (they do not alert):", ""]
        lines += [
            f"- `{w.column}`{' ' + w.slice if w.slice else ''}: {w.value:.4g} "
            f"(must be {_CHECKS.get(w.check, ('', '?'))[1]} {w.threshold:.4g})"
            for w in report.warnings
        ]
    return "\n".join(lines) + "\n"
