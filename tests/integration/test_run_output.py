"""What `ranklab run` prints on a fresh state: a line per asset and the summary, no Dagster
event log and no warnings on the terminal; the event log in the file the run names.

The run is the session's shared one (`lifecycle_fixtures.py`, the notebooks read its state)."""

import re
from pathlib import Path

import pytest
from lifecycle_fixtures import LifecycleRun

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ASSETS = (
    "raw_events",
    "validated_events",
    "feature_tables",
    "feature_registry",
    "online_features",
    "training_data",
    "trained_models",
    "model_evaluation",
    "candidate_model",
    "promotion",
    "monitoring_reference",
)
MAX_LINES = 45  # the "at most about 40": the summary grows with the gate's checks


def test_ranklab_run_prints_progress_and_summary_only(default_lifecycle: LifecycleRun):
    run = default_lifecycle
    out = run.output
    assert run.returncode == 0, out
    lines = out.splitlines()
    print(out)  # the output, for whoever reads the test log
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines:\n{out}"
    assert not re.search(r"Warning|DEBUG|Traceback", out), out
    for asset in ASSETS:
        assert any(line.strip().startswith(asset) for line in lines), (asset, out)
    assert "23/23 checks passed" in out and "== ranklab run: succeeded" in out
    log = Path(re.search(r"event log: (\S+\.log)", out).group(1))
    assert log.is_relative_to(run.state / "logs")
    assert "STEP_SUCCESS" in log.read_text()  # Dagster's events: in the file, not on screen
