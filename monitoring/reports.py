"""Evidently reports per monitoring window, each a set of pass/fail checks.

Three reports, each answering one question about a window of served traffic, each compared
with the served model's ``MonitoringReference`` (``monitoring/reference.py``):

- ``feature_drift``: did the inputs change? One ``ValueDrift`` per feature, per request
  context column and for the score (prediction drift), with the method and threshold chosen
  per kind of column (``Thresholds``).
- ``data_quality``: are the inputs broken? Per feature: nulls, values outside the reference
  range, a spread collapsed to a constant; per context column: categories never seen; per
  window: the share of requests the model did not answer (fallbacks).
- ``ranking_quality``: once the window's clicks have arrived, is the order still good?
  Hit rate@10, MRR and NDCG@10 per search, overall and per slice (device, region, query
  category), each tested against the reference's value at training time.

Every check is an Evidently test with its threshold, so the HTML shows it and
``evidently ui`` charts it across windows. Critical checks raise alerts; non-critical ones
show as warnings only: the drift of features that move on ordinary days
(``WARN_ONLY_DRIFT``), and each slice's ranking quality (16 slices of a small window would
alert mostly on noise).

Why the ranking tests sit on per-search means: Evidently 0.7's NDCG/MRR/HitRate return a
curve over k and a test can only bind to its first row, so the tests use ``MeanValue`` over
one row per search (computed by ``models.metrics``, the offline evaluation's code) while
the recsys metrics draw the curves beside them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Recsys, Report
from evidently.core.metric_types import CountValue, SingleValue, TestStatus
from evidently.metrics import (
    MRR,
    NDCG,
    HitRate,
    InListValueCount,
    MeanValue,
    MissingValueCount,
    OutListValueCount,
    OutRangeValueCount,
    RowCount,
    StdValue,
    ValueDrift,
)
from evidently.metrics.group_by import GroupByMetric
from evidently.tests.numerical_tests import (
    GreaterOrEqualMetricTest,
    LessOrEqualMetricTest,
    LessThanMetricTest,
)

from features import aggregates
from features.events import REQUEST_ID
from features.feature_repo.feature_views import SPECS
from monitoring.drift import NUMERIC_METHOD, column_methods, on_drift_scale
from monitoring.reference import MonitoringReference
from monitoring.windows import (
    CONTEXT_COLUMNS,
    MODEL_VERSION,
    QUALITY_METRICS,
    SCORE,
    SERVED_BY,
    SERVED_BY_MODEL,
    Window,
    session_quality,
)
from ranklab import schema
from ranklab.io import write_json, write_text
from ranklab.settings import Settings

ReportKind = Literal["feature_drift", "data_quality", "ranking_quality"]
REPORT_KINDS: tuple[ReportKind, ...] = ("feature_drift", "data_quality", "ranking_quality")
# Features whose drift warns instead of alerting, because they move on ordinary days:
# - calendar features grow by construction: everything is a little older than in training;
# - activity features (trailing counts, click-through rates, the mean price a user clicked)
#   follow each week's traffic volume and, once a model serves, its own clicks: a new order
#   changes what gets clicked, hence these features (a feedback loop). Their breakage is
#   still caught by data quality (nulls, range, a constant).
# What alerts: the catalogue's attributes, the request-time features, the request context
# and the score.
CALENDAR_FEATURES = ("item_age_days", "user_days_since_signup")
ACTIVITY_VIEWS = (
    aggregates.ITEM_STATS,
    aggregates.USER_STATS,
    aggregates.USER_CATEGORY_AFFINITY,
)
WARN_ONLY_DRIFT = frozenset(
    [*CALENDAR_FEATURES, *(name for view in ACTIVITY_VIEWS for name in SPECS[view])]
)
QUALITY_SLICES = (schema.DEVICE, schema.REGION, schema.QUERY_CATEGORY)
_SESSION_METRICS_ROW = "_first_row_of_search"


@dataclass(frozen=True)
class Thresholds:
    """Every number that turns a measurement into pass/fail (calibrated on the control
    scenario, ``benchmarks/monitoring.py``)."""

    # A column drifts when its score passes ``drift_margin`` times the largest score between
    # two ordinary training days (``monitoring/drift.py``), and never below the floors:
    # Wasserstein distance in units of the reference's std (numeric columns, the score) and
    # Jensen-Shannon distance of category frequencies (context columns).
    drift_margin: float = 1.5
    min_numeric_drift: float = 0.1
    min_categorical_drift: float = 0.05
    max_missing_share: float = 0.01  # the reference has none
    max_out_of_range_share: float = 0.05  # outside the reference's [min, max]
    min_spread_ratio: float = 0.1  # std over the reference's std: a feature turned constant
    max_fallback_share: float = 0.05  # requests not answered by the reference's model
    # Ranking quality fails when the window's mean is this many standard errors below the
    # reference's (a one-sided z-test, standard errors from both sides' per-search spread).
    # Four, not the textbook three: served traffic runs a little below the replayed
    # reference even when nothing changed (the model's own clicks feed its CTR features),
    # which eats about one standard error of a day's margin.
    quality_z: float = 4.0
    min_slice_searches: int = 20  # slices with fewer searches are not tested


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class CheckResult:
    """One Evidently test's outcome, flattened for alerts and tables."""

    report: ReportKind
    check: str  # drift, missing, out_of_range, spread, new_category, fallback_share, quality
    column: str
    slice: str | None  # "device=mobile" for a slice of the ranking quality, else None
    value: float
    threshold: float
    passed: bool
    critical: bool
    description: str


@dataclass
class WindowReport:
    """One report of one window: its checks and where its HTML and JSON were written."""

    kind: ReportKind
    window: Window
    checks: list[CheckResult]
    rows: int
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        """The failed critical checks: what raises an alert."""
        return [c for c in self.checks if c.critical and not c.passed]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.critical and not c.passed]

    def summary(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "rows": self.rows,
            "checks": len(self.checks),
            "failures": [asdict(c) for c in self.failures],
            "warnings": [asdict(c) for c in self.warnings],
            "paths": self.paths,
        }


# ---- where reports go ----
class ReportStore:
    """HTML and JSON under ``settings.root/monitoring/reports/<window>/``, and every run in a
    local Evidently workspace (``settings.root/evidently``) so ``evidently ui`` shows the
    history of windows. ``workspace=False`` writes the files only (faster; benchmarks)."""

    PROJECT = "ranklab ranker monitoring"

    def __init__(self, settings: Settings, workspace: bool = True) -> None:
        self.root = settings.root / "monitoring" / "reports"
        self.workspace_path = settings.root / "evidently"
        self._workspace = None
        self._project_id = None
        self.use_workspace = workspace

    def save(self, report: WindowReport, snapshot: object) -> None:
        directory = self.root / report.window.name
        html = directory / f"{report.kind}.html"
        write_text(snapshot.get_html_str(as_iframe=False), html)
        checks = directory / f"{report.kind}.json"
        report.paths = {"html": str(html), "checks": str(checks)}
        write_json({**report.summary(), "evidently": snapshot.dict()}, checks)
        if self.use_workspace:
            self._add_to_workspace(snapshot, f"{report.kind} {report.window.name}")

    def _add_to_workspace(self, snapshot: object, name: str) -> None:
        from evidently.ui.workspace import Workspace  # heavy: only when a workspace is used

        if self._workspace is None:
            self._workspace = Workspace.create(str(self.workspace_path))
            found = self._workspace.search_project(self.PROJECT)
            if found:
                project = found[0]
            else:
                project = self._workspace.create_project(self.PROJECT)
                for panel in _dashboard_panels():
                    project.dashboard.add_panel(panel)
            self._project_id = project.id
        self._workspace.add_run(self._project_id, snapshot, name=name)


def _dashboard_panels() -> list:
    """The workspace dashboard: a point per window for the numbers people watch."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    def series(metric: str, column: str, legend: str, **labels: str) -> PanelMetric:
        return PanelMetric(metric=metric, metric_labels={"column": column, **labels}, legend=legend)

    return [
        line_plot_panel(
            "Ranking quality per window (from click labels)",
            [series("MeanValue", m, m) for m in QUALITY_METRICS],
        ),
        line_plot_panel(
            "Prediction and price drift (Wasserstein, reference std)",
            [series("ValueDrift", c, c) for c in (SCORE, "item_price", "price_vs_user_usual")],
        ),
        line_plot_panel(
            "Context drift (Jensen-Shannon)",
            [series("ValueDrift", c, c) for c in CONTEXT_COLUMNS],
        ),
        line_plot_panel(
            "Requests not answered by the model (share)",
            [series("InListValueCount", "answered_by_model", "fallback", value_type="share")],
        ),
    ]


# ---- feature drift ----
def feature_drift_report(
    rows: pd.DataFrame,
    reference: MonitoringReference,
    window: Window,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    store: ReportStore | None = None,
) -> WindowReport:
    """Per feature, context column and the score: has the window's distribution moved away
    from the reference's? Only requests the reference's model answered are compared."""
    served = _served_by_reference_model(rows, reference)
    if served.empty:
        return _no_traffic("feature_drift", window, reference)
    day_to_day = reference.meta["day_to_day_drift"]
    metrics = []
    for column, method in column_methods(
        [*reference.feature_columns, SCORE], CONTEXT_COLUMNS
    ).items():
        floor = (
            thresholds.min_numeric_drift
            if method == NUMERIC_METHOD
            else thresholds.min_categorical_drift
        )
        threshold = max(floor, thresholds.drift_margin * day_to_day[column])
        metrics.append(_drift(column, method, threshold, column not in WARN_ONLY_DRIFT))
    definition = _definition(reference.feature_columns + [SCORE], list(CONTEXT_COLUMNS))
    log_columns = reference.meta["log_scaled"]
    return _run(
        "feature_drift",
        metrics,
        on_drift_scale(served, log_columns),
        on_drift_scale(reference.candidates, log_columns),
        definition,
        window,
        store,
    )


def _drift(column: str, method: str, threshold: float, critical: bool) -> ValueDrift:
    test = LessThanMetricTest(threshold=threshold, is_critical=critical, alias=f"drift:{column}")
    return ValueDrift(column=column, method=method, threshold=threshold, tests=[test])


# ---- data quality ----
def data_quality_report(
    rows: pd.DataFrame,
    reference: MonitoringReference,
    window: Window,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    store: ReportStore | None = None,
) -> WindowReport:
    """Nulls, out-of-range values and collapsed spread per feature, unseen categories per
    context column, and the share of requests not answered by the reference's model."""
    if rows.empty:
        return _no_traffic("data_quality", window, reference)
    rows = rows.assign(
        answered_by_model=np.where(_is_reference_model(rows, reference), "yes", "no")
    )
    ref = reference.candidates.assign(answered_by_model="yes")
    days_since_reference = (window.end - pd.Timestamp(reference.meta["last_day"], tz="UTC")).days
    metrics: list = [RowCount()]
    for column in reference.feature_columns:
        metrics += _feature_quality(column, ref[column], thresholds, days_since_reference)
    for column in CONTEXT_COLUMNS:
        known = sorted(ref[column].dropna().unique().tolist())
        metrics.append(
            OutListValueCount(
                column=column,
                values=known,
                tests=[LessOrEqualMetricTest(threshold=0, alias=f"new_category:{column}")],
            )
        )
    metrics.append(
        InListValueCount(
            column="answered_by_model",
            values=["no"],
            share_tests=[
                LessOrEqualMetricTest(
                    threshold=thresholds.max_fallback_share, alias="fallback_share:requests"
                )
            ],
        )
    )
    definition = _definition(reference.feature_columns, [*CONTEXT_COLUMNS, "answered_by_model"])
    return _run("data_quality", metrics, rows, ref, definition, window, store)


def _feature_quality(
    column: str, reference: pd.Series, thresholds: Thresholds, days_since_reference: int
) -> list:
    low, high = float(reference.min()), float(reference.max())
    if column in CALENDAR_FEATURES:
        high += max(days_since_reference, 0)
    metrics = [
        MissingValueCount(
            column=column,
            share_tests=[
                LessOrEqualMetricTest(
                    threshold=thresholds.max_missing_share, alias=f"missing:{column}"
                )
            ],
        ),
        OutRangeValueCount(
            column=column,
            left=low,
            right=high,
            share_tests=[
                LessOrEqualMetricTest(
                    threshold=thresholds.max_out_of_range_share, alias=f"out_of_range:{column}"
                )
            ],
        ),
    ]
    reference_std = float(reference.std())
    if reference_std > 0:
        metrics.append(
            StdValue(
                column=column,
                tests=[
                    GreaterOrEqualMetricTest(
                        threshold=thresholds.min_spread_ratio * reference_std,
                        alias=f"spread:{column}",
                    )
                ],
            )
        )
    return metrics


# ---- ranking quality ----
def ranking_quality_report(
    labelled: pd.DataFrame,
    reference: MonitoringReference,
    window: Window,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    store: ReportStore | None = None,
) -> WindowReport:
    """Hit rate@10, MRR and NDCG@10 of the window's searches, from their click labels,
    against the reference model's values at training time; overall, then per slice."""
    served = _served_by_reference_model(labelled, reference)
    if served.empty:
        return _no_traffic("ranking_quality", window, reference)
    current = _with_search_metrics(served)
    ref_sessions = reference.sessions
    metrics: list = [
        NDCG(k=10, no_feedback_users=False),
        MRR(k=10, no_feedback_users=True),
        HitRate(k=10, no_feedback_users=True),
    ]
    searches = current[current[_SESSION_METRICS_ROW]]
    for metric in QUALITY_METRICS:
        threshold = _quality_floor(ref_sessions[metric], searches[metric], thresholds.quality_z)
        if threshold is not None:
            metrics.append(
                MeanValue(
                    column=metric,
                    tests=[
                        GreaterOrEqualMetricTest(threshold=threshold, alias=f"quality:{metric}")
                    ],
                )
            )
        for column in QUALITY_SLICES:
            for value in sorted(searches[column].dropna().unique()):
                in_slice = searches[column] == value
                threshold = _quality_floor(
                    ref_sessions.loc[ref_sessions[column] == value, metric],
                    searches.loc[in_slice, metric],
                    thresholds.quality_z,
                    thresholds.min_slice_searches,
                )
                if threshold is None:
                    continue
                test = GreaterOrEqualMetricTest(
                    threshold=threshold,
                    is_critical=False,
                    alias=f"quality:{metric}:{column}={value}",
                )
                metrics.append(
                    GroupByMetric(
                        metric=MeanValue(column=metric, tests=[test]),
                        column_name=column,
                        label=value,
                    )
                )
    reference_rows = _with_search_metrics(reference.replayed)
    definition = DataDefinition(
        numerical_columns=list(QUALITY_METRICS),
        categorical_columns=list(QUALITY_SLICES),
        ranking=[
            Recsys(
                user_id=REQUEST_ID,
                item_id=schema.ITEM_ID,
                target=schema.LABEL,
                prediction=schema.POSITION,
                recommendations_type="rank",
            )
        ],
    )
    return _run("ranking_quality", metrics, current, reference_rows, definition, window, store)


def _quality_floor(
    reference: pd.Series, current: pd.Series, z: float, min_searches: int = 1
) -> float | None:
    """The lowest window mean that is not ``z`` standard errors below the reference mean;
    None when either side has too few searches with a value to judge."""
    reference, current = reference.dropna(), current.dropna()
    if len(current) < min_searches or len(reference) < 2:
        return None
    spread = float(reference.std())
    standard_error = spread * np.sqrt(1 / len(current) + 1 / len(reference))
    return float(reference.mean() - z * standard_error)


def _with_search_metrics(labelled: pd.DataFrame) -> pd.DataFrame:
    """Candidate rows with the per-search metrics on each search's first row, NaN on the
    others: the recsys metrics read every row, ``MeanValue`` averages searches, not items."""
    per_search = session_quality(labelled).set_index(REQUEST_ID)[list(QUALITY_METRICS)]
    rows = labelled.drop(columns=list(QUALITY_METRICS), errors="ignore").reset_index(drop=True)
    first = ~rows.duplicated(REQUEST_ID)
    values = per_search.reindex(rows[REQUEST_ID]).to_numpy()
    values[~first.to_numpy()] = np.nan
    rows[list(QUALITY_METRICS)] = values
    rows[_SESSION_METRICS_ROW] = first.to_numpy()
    return rows


# ---- shared ----
def _is_reference_model(rows: pd.DataFrame, reference: MonitoringReference) -> pd.Series:
    return (rows[SERVED_BY] == SERVED_BY_MODEL) & (
        rows[MODEL_VERSION].astype(str) == str(reference.model_version)
    )


def _served_by_reference_model(rows: pd.DataFrame, reference: MonitoringReference) -> pd.DataFrame:
    return rows[_is_reference_model(rows, reference)]


def _definition(numerical: Sequence[str], categorical: Sequence[str]) -> DataDefinition:
    return DataDefinition(numerical_columns=list(numerical), categorical_columns=list(categorical))


def _run(
    kind: ReportKind,
    metrics: list,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    definition: DataDefinition,
    window: Window,
    store: ReportStore | None,
) -> WindowReport:
    columns = [
        *definition.numerical_columns,
        *definition.categorical_columns,
        *_ranking_columns(definition),
    ]
    columns = list(dict.fromkeys(columns))
    snapshot = Report(metrics, include_tests=False).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
        timestamp=window.end.to_pydatetime(),
        tags=[kind],
        name=f"{kind} {window.name}",
    )
    report = WindowReport(kind, window, _check_results(kind, snapshot), rows=len(current))
    if store is not None:
        store.save(report, snapshot)
    return report


def _ranking_columns(definition: DataDefinition) -> list[str]:
    return [
        column
        for ranking in (definition.ranking or [])
        for column in (ranking.user_id, ranking.item_id, ranking.target, ranking.prediction)
    ]


def _check_results(kind: ReportKind, snapshot: object) -> list[CheckResult]:
    results = []
    for test in snapshot.tests_results:
        config = test.test_config
        alias = config.get("alias") or ""
        check, _, target = alias.partition(":")
        column, _, slice_ = target.partition(":")
        results.append(
            CheckResult(
                report=kind,
                check=check,
                column=column,
                slice=slice_ or None,
                value=_tested_value(snapshot, test),
                threshold=float(config["threshold"]),
                passed=test.status == TestStatus.SUCCESS,
                critical=bool(config.get("is_critical", True)),
                description=test.description,
            )
        )
    return results


def _tested_value(snapshot: object, test: object) -> float:
    result = snapshot.metric_results[test.metric_config.metric_id]
    if isinstance(result, CountValue):
        is_count = getattr(test.bound_test, "is_count", True)
        return float((result.count if is_count else result.share).value)
    if isinstance(result, SingleValue):
        return float(result.value)
    return float("nan")


def _no_traffic(kind: ReportKind, window: Window, reference: MonitoringReference) -> WindowReport:
    """A window with nothing to compare is itself a failure: the model answered nothing."""
    check = CheckResult(
        report=kind,
        check="traffic",
        column="requests",
        slice=None,
        value=0.0,
        threshold=1.0,
        passed=False,
        critical=True,
        description=f"no request in the window was answered by model v{reference.model_version}",
    )
    return WindowReport(kind, window, [check], rows=0)


def load_checks(path: Path) -> list[CheckResult]:
    """The checks a saved report JSON holds (failures and warnings)."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return [CheckResult(**c) for c in document["failures"] + document["warnings"]]
