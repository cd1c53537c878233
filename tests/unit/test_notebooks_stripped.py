"""Committed notebooks carry no outputs: diffs stay readable and no stale figure is shipped.

Strip them with ``.venv/bin/nbstripout notebooks/*.ipynb`` before committing (``make lint``
runs ``nbstripout --verify``). The tests in tests/integration/test_notebooks.py execute them.
"""

from __future__ import annotations

import nbformat
import pytest

from ranklab.settings import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def unstripped(notebook: nbformat.NotebookNode) -> list[str]:
    """What keeps ``notebook`` from being stripped: one line per cell with outputs or a count."""
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {index} has {len(cell.outputs)} outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has execution_count {cell.execution_count}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_no_outputs(path):
    problems = unstripped(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}: {problems}; run nbstripout {path}"


def test_the_check_finds_outputs_and_counts():
    executed = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# title"),
            nbformat.v4.new_code_cell(
                "1 + 1",
                execution_count=3,
                outputs=[
                    nbformat.v4.new_output(
                        "execute_result", data={"text/plain": "2"}, execution_count=3
                    )
                ],
            ),
            nbformat.v4.new_code_cell("x = 1"),
        ]
    )
    assert unstripped(executed) == ["cell 1 has 1 outputs", "cell 1 has execution_count 3"]
