"""Alert rules: what is recorded, what asks for retraining, and since when a check fails."""

from __future__ import annotations

import pandas as pd
import pytest

from monitoring.alerts import alerts_dir, raise_alerts, read_alerts
from monitoring.reports import CheckResult, WindowReport
from monitoring.windows import Window
from ranklab.settings import Settings

DAY = pd.Timestamp("2026-10-01", tz="UTC")


def _window(day: int) -> Window:
    return Window(DAY + pd.Timedelta(days=day), DAY + pd.Timedelta(days=day + 1))


def _check(
    report: str,
    check: str,
    column: str,
    passed: bool,
    critical: bool = True,
    value: float = 0.5,
    threshold: float = 0.2,
) -> CheckResult:
    return CheckResult(report, check, column, None, value, threshold, passed, critical, "d")


def _report(kind: str, day: int, *checks: CheckResult) -> WindowReport:
    return WindowReport(
        kind, _window(day), list(checks), rows=250, paths={"html": f"/r/{day}.html"}
    )


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def test_only_failed_critical_checks_alert(settings):
    quiet = _report(
        "feature_drift",
        0,
        _check("feature_drift", "drift", "item_price", passed=True),
        _check("feature_drift", "drift", "item_ctr_7d", passed=False, critical=False),  # a warning
    )
    assert raise_alerts([quiet], "3", settings) == []
    assert read_alerts(settings) == []


def test_drift_alerts_ask_for_retraining_and_are_recorded_once(settings):
    drift = _report(
        "feature_drift", 0, _check("feature_drift", "drift", "item_price", passed=False)
    )
    (alert,) = raise_alerts([drift], "3", settings)
    assert alert.alert_id == "feature_drift-2026-10-01T0000-v3"
    assert alert.requests_retraining and alert.raised_at == _window(0).end.isoformat()
    assert [(f.column, f.value, f.threshold) for f in alert.failed] == [("item_price", 0.5, 0.2)]

    markdown = (alerts_dir(settings) / f"{alert.alert_id}.md").read_text()
    assert "# Feature drift: ranker v3" in markdown
    assert "| `item_price` | 0.5 | < 0.2 | 2026-10-01T00:00:00+00:00 |" in markdown
    assert "docs/runbooks/drift-alert.md#feature-drift" in markdown

    raise_alerts([drift], "3", settings)  # the same window again: nothing new is written
    assert [a.alert_id for a in read_alerts(settings)] == [alert.alert_id]


def test_broken_inputs_never_ask_for_retraining_even_when_they_also_drift(settings):
    reports = [
        _report("feature_drift", 0, _check("feature_drift", "drift", "item_price", passed=False)),
        _report(
            "data_quality", 0, _check("data_quality", "out_of_range", "item_price", passed=False)
        ),
    ]
    alerts = {a.report: a for a in raise_alerts(reports, "3", settings)}
    assert not alerts["data_quality"].requests_retraining
    assert not alerts["feature_drift"].requests_retraining
    # The window's ranking report comes later, once labels arrive: still no retraining.
    late = _report("ranking_quality", 0, _check("ranking_quality", "quality", "mrr", passed=False))
    (quality,) = raise_alerts([late], "3", settings)
    assert not quality.requests_retraining
    assert quality.raised_at == _window(0).labels_complete_at.isoformat()


def test_failing_since_goes_back_over_consecutive_windows(settings):
    def drift(day: int, column: str) -> WindowReport:
        return _report("feature_drift", day, _check("feature_drift", "drift", column, passed=False))

    raise_alerts([drift(0, "region")], "3", settings)
    raise_alerts([drift(1, "region")], "3", settings)
    raise_alerts([drift(3, "region")], "3", settings)  # day 2 passed: a new run of failures
    (day4,) = raise_alerts([drift(4, "region")], "3", settings)
    assert day4.failed[0].failing_since == _window(3).start.isoformat()
    (other,) = raise_alerts([drift(5, "device")], "3", settings)
    assert other.failed[0].failing_since == _window(5).start.isoformat()
    (day2_after,) = raise_alerts([drift(2, "region")], "4", settings)  # another model: no history
    assert day2_after.failed[0].failing_since == _window(2).start.isoformat()
