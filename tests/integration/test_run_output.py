"""What `ranklab run` prints on a fresh state: a line per asset and the summary, no Dagster
event log and no warnings on the terminal; the event log in the file the run names."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_ranklab_run_prints_progress_and_summary_only(tmp_path):
    env = {
        **os.environ,
        "RANKLAB_STATE_DIR": str(tmp_path / "state"),
        "RANKLAB_DATA__SCALE": "0.2",
        "DAGSTER_HOME": str(tmp_path / "state" / "dagster"),
    }
    ranklab = Path(sys.executable).with_name("ranklab")
    run = subprocess.run(
        [str(ranklab), "run"], env=env, capture_output=True, text=True, timeout=540
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    lines = out.splitlines()
    print(out)  # the output, for whoever reads the test log
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines:\n{out}"
    assert not re.search(r"Warning|DEBUG|Traceback", out), out
    for asset in ASSETS:
        assert any(line.strip().startswith(asset) for line in lines), (asset, out)
    assert "23/23 checks passed" in out and "== ranklab run: succeeded" in out
    log = Path(re.search(r"event log: (\S+\.log)", out).group(1))
    assert log.is_relative_to(tmp_path / "state" / "logs")
    assert "STEP_SUCCESS" in log.read_text()  # Dagster's events: in the file, not on screen
