"""The alert rules and the dashboard (ops/): promtool checks and unit-tests the rules, and
every metric they and the dashboard name is one the service exports.

promtool comes from Debian's ``prometheus`` package, which ``make setup`` installs: a
missing promtool fails these tests rather than skipping them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from ranklab.settings import REPO_ROOT
from serving.metrics import ServingMetrics

PROMETHEUS = REPO_ROOT / "ops" / "prometheus"
RULES = PROMETHEUS / "serving.rules.yml"
RULE_TESTS = PROMETHEUS / "serving.rules.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = REPO_ROOT / "ops" / "grafana" / "serving.json"
# Prometheus' own series about the scrape, not exported by the service.
PROMETHEUS_SERIES = {"up"}
METRIC_NAME = re.compile(r"\b(ranklab[_:][a-zA-Z0-9_:]+|up)\b")
# A histogram and a counter are exported as these series.
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make setup` installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


def exported_series() -> set[str]:
    """Every series name the service's metrics can produce (serving/metrics.py)."""
    registry = CollectorRegistry()
    ServingMetrics(registry)
    return {f"{m.name}{s}" for m in registry.collect() for s in SUFFIXES}


def recorded_series(rules: dict) -> set[str]:
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def unknown_metrics(expressions: list[str], rules: dict) -> dict[str, set[str]]:
    """Expression -> the names in it that neither the service nor a recording rule makes."""
    known = exported_series() | recorded_series(rules) | PROMETHEUS_SERIES
    found = {e: set(METRIC_NAME.findall(e)) - known for e in expressions}
    return {e: names for e, names in found.items() if names}


def rule_expressions(rules: dict) -> list[str]:
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def dashboard_expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


@pytest.fixture(scope="module")
def rules() -> dict:
    return yaml.safe_load(RULES.read_text())


def test_promtool_accepts_the_rules_and_the_scrape_config():
    for args in (("check", "rules", str(RULES)), ("check", "config", str(CONFIG))):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_promtool_unit_tests():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_rule_unit_test_fails_promtool(tmp_path):
    """The check can fail: the same tests against a rule with another threshold."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("> 0.05\n", "> 0.5\n", 1))
    result = promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "RankingFallbackRateHigh" in result.stdout + result.stderr


def test_every_alert_the_issue_asks_for_exists(rules):
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "RankingFallbackRateHigh",
        "RankingLatencyP99High",
        "RankingChampionChanged",
        "PredictionLogBacklog",
        "RankingNotReady",
    } <= alerts


def test_the_rules_and_the_dashboard_name_only_metrics_the_service_exports(rules):
    dashboard = json.loads(DASHBOARD.read_text())
    assert unknown_metrics(rule_expressions(rules), rules) == {}
    assert unknown_metrics(dashboard_expressions(dashboard), rules) == {}
    assert dashboard_expressions(dashboard), "the dashboard has no queries"


def test_a_metric_the_service_does_not_export_is_caught(rules):
    assert unknown_metrics(["rate(ranklab_rank_requests_totl[5m])"], rules) == {
        "rate(ranklab_rank_requests_totl[5m])": {"ranklab_rank_requests_totl"}
    }


def test_every_panel_of_the_dashboard_reads_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())
    assert all(p["datasource"]["type"] == "prometheus" for p in dashboard["panels"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_rule_files_are_where_the_config_says(rules):
    config = yaml.safe_load(CONFIG.read_text())
    assert [Path(f).name for f in config["rule_files"]] == [RULES.name]
    assert rules["groups"]


def test_the_dashboard_names_every_exported_ranklab_metric(rules):
    """A metric added to the service without a panel is a gap in the dashboard."""
    dashboard = " ".join(dashboard_expressions(json.loads(DASHBOARD.read_text())))
    rule_text = " ".join(rule_expressions(rules))
    registry = CollectorRegistry()
    ServingMetrics(registry)
    names = {m.name for m in registry.collect()}
    shown = {n for n in names if re.search(rf"\b{re.escape(n)}", dashboard + " " + rule_text)}
    assert names - shown == set()
