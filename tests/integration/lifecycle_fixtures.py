"""One real `ranklab run` on the default data, shared by every test module that needs it.

The notebooks need the state `make run` leaves, and the run's own terminal output is what
`test_run_output.py` reads: one run (~80 s on 2 cores) serves both. The default data, not a
tenth of it: the tour needs a champion, and the gate judges on the debiased metric, whose
interval at a tenth of the data (55 test sessions with a click) holds 0 even for the better
ranker (`beats_baseline` refused it: +0.013 [-0.043, 0.065]).

Tests read this state and never change it. `conftest.py` makes the fixture visible to every
integration module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class LifecycleRun:
    state: Path
    env: dict[str, str]  # what a person's shell would export to use this state
    output: str  # stdout then stderr of `ranklab run`
    returncode: int


_SHARED: dict[str, LifecycleRun] = {}


@pytest.fixture(scope="session")
def default_lifecycle(tmp_path_factory: pytest.TempPathFactory) -> LifecycleRun:
    """`ranklab run` into a fresh state folder, once per session (memoised: each importing
    module gets its own fixture definition, the memo makes them share the run)."""
    if "run" not in _SHARED:
        state = tmp_path_factory.mktemp("lifecycle") / "state"
        env = {"RANKLAB_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster")}
        result = subprocess.run(
            [str(Path(sys.executable).with_name("ranklab")), "run"],
            env={**_without_ranklab_settings(os.environ), **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        _SHARED["run"] = LifecycleRun(state, env, result.stdout + result.stderr, result.returncode)
    return _SHARED["run"]


def _without_ranklab_settings(environ: os._Environ[str]) -> dict[str, str]:
    """The default settings whatever the caller's shell exports (a scale, another state)."""
    return {k: v for k, v in environ.items() if not k.startswith(("RANKLAB_", "DAGSTER_"))}
