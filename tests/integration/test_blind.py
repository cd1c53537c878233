"""The blind end-to-end test: the whole loop runs while the system cannot see any ground truth.

The simulated world keeps its truth (latent tastes and qualities, true and expected
utilities, when a scenario started) in a folder outside the state folder, so nothing the
pipeline, the service or monitoring could open holds it. Then the loop runs for real, as
`make drift-demo` runs it: the lifecycle job (data checks, Feast, the rankers, the gate), a
BentoML server answering simulated users over HTTP, a monitoring partition per served day,
the sensors, a retraining run on the served traffic and the gate again. Afterwards every
parquet file under the state folder is opened and none has a ground-truth column.

The import contract (``.importlinter``, in ``make lint``) proves the production code cannot
import the world; this test proves the running system does not need what the world hides.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from models.registry import Registry
from ranklab.settings import Settings, SplitSettings
from simulation.drift_demo import run_drift_demo
from simulation.truth import is_truth_column

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _truth_columns_under(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in root.rglob("*.parquet"):
        columns = [c for c in pq.read_schema(path).names if is_truth_column(c)]
        if columns:
            found[str(path.relative_to(root))] = columns
    return found


def test_the_loop_runs_blind_and_retrains_through_the_gate(tmp_path):
    world = tmp_path / "world"
    settings = Settings(
        state_dir=tmp_path / "state",
        simulation_dir=world,
        split=SplitSettings(valid_days=7, test_days=7),  # as `ranklab drift-demo` sets them
    )
    result = run_drift_demo(
        settings, "silent_degradation", days_before=7, days_after=2, port=_free_port(), echo=print
    )

    # The loop ran: the degradation was caught, a retraining run was judged by the gate.
    assert result.detect_hours is not None
    assert result.retrained_version is not None and result.decision is not None
    registry = Registry(settings)
    assert registry.champion_version() is not None
    served = result.windows
    assert served is not None and len(served) == 7 + 2

    # Nothing the system could see held the truth; the world kept it, outside.
    state = settings.root
    assert not (state / "world").exists()
    assert _truth_columns_under(state) == {}
    assert _truth_columns_under(world), "the world should have kept its truth"
    landing = pq.read_schema(state / "landing" / "impressions.parquet").names
    assert not any(is_truth_column(c) for c in landing)
