"""The serving benchmark, run for a second per point: the figures in serving/README.md come
from this code, so it must keep running (servers up with every worker, a report written).

The speed itself is not asserted: these machines are shared, and the benchmark's numbers are
read side by side in one run, not against a threshold in a test.
"""

# ruff: noqa: F811 - pytest fixtures imported from serving_fixtures are parameters here
from __future__ import annotations

import subprocess
import sys

import pytest
from serving_fixtures import copy_state, serving_state  # noqa: F401 - a fixture

from ranklab.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def report_rows(text: str) -> dict[tuple[str, int], list[str]]:
    """(server, concurrency) -> the rest of its row in the report's table."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 10 and cells[1].isdigit():
            rows[(cells[0], int(cells[1]))] = cells[2:]
    return rows


def test_the_serving_benchmark_measures_bentoml_and_mlflow_serve(serving_state, tmp_path):
    settings = copy_state(serving_state, tmp_path / "state")
    command = [sys.executable, "-m", "benchmarks.serving", "--state-dir", str(settings.root),
               "--seconds", "1", "--concurrency", "2", "--workers", "2",
               "--skip", "no-cache", "fallback"]  # fmt: skip
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]

    report = (settings.reports_dir / "serving_benchmark.md").read_text(encoding="utf-8")
    rows = report_rows(report)
    assert set(rows) == {
        ("in-process: cached reader + model", 1),
        ("in-process: Feast SDK + model", 1),
        ("bentoml", 2),
        ("bentoml (wrk)", 2),  # the same server through wrk, the external load generator
        ("mlflow models serve", 2),
    }
    for server in ("bentoml", "bentoml (wrk)", "mlflow models serve"):
        throughput, *_, errors, fallbacks, cpu, client_cpu = rows[(server, 2)]
        assert float(throughput.replace(",", "")) > 0
        assert (errors, fallbacks) == ("0", "0"), rows[(server, 2)]  # every request by the model
        assert float(cpu) > 0 and float(client_cpu) > 0
    assert "| more throughput than mlflow serve (c=8)" not in report  # only measured points
    assert "CPU cores (" in report  # the machine the numbers were measured on
