"""Every notebook under notebooks/ runs, top to bottom, on the state `make run` leaves.

One session fixture (`lifecycle_fixtures.py`, shared with `test_run_output.py`) runs the
real lifecycle (`ranklab run`, the default data) into a temporary state folder; each notebook is then executed by a real Jupyter kernel (nbclient)
with ``RANKLAB_STATE_DIR`` pointing there, exactly as a person would open it after
`make run`. A notebook that raises fails its test, so none rots.

Each notebook's time is printed (``-s`` shows it) and compared with the one-minute target
of the guided tour as a report, not an assertion: the machine is shared and slow runs are
not bugs.
"""

from __future__ import annotations

import time
import warnings

import nbformat
import pytest
from lifecycle_fixtures import LifecycleRun
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ranklab.settings import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TARGET_SECONDS = 60  # the tour's promise on 2 cores; reported, never asserted
CELL_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="session")
def lifecycle_state(default_lifecycle: LifecycleRun) -> dict[str, str]:
    """The environment of a state folder that `ranklab run` filled (the default data)."""
    run = default_lifecycle
    assert run.returncode == 0, run.output[-6000:]
    gate = sorted((run.state / "reports" / "gate").glob("*.md"))
    assert "CHAMPION" in gate[0].read_text().splitlines()[0], gate[0].read_text()[:2000]
    return run.env


def test_there_are_notebooks_to_run():
    assert len(NOTEBOOKS) >= 5, f"expected the guided tour in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_the_state_make_run_leaves(path, lifecycle_state, monkeypatch):
    for name, value in lifecycle_state.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    started = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}")
    seconds = time.perf_counter() - started
    print(f"\n{path.name}: {seconds:.1f} s (target {TARGET_SECONDS} s)")
    if seconds > TARGET_SECONDS:
        warnings.warn(
            f"{path.name} took {seconds:.0f} s, over the {TARGET_SECONDS} s target",
            stacklevel=1,
        )
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors
