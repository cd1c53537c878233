"""The figures the team documents quote (docs/problem-framing.md, docs/decisions/) stay tied to
what produced them. Each document ends with a "Figures and their sources" table; a row's
value must appear in the document's text and agree with its source:

- a file path: the value appears verbatim in that file (a README's measured output, a
  benchmark table), so re-measuring there and not here fails;
- ``settings:<field path>``, ``gate:<field>``, ``readout:<field>``: the value equals the
  default of that setting in the code (``Settings``, ``GateConfig``, ``ReadoutConfig``).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "problem-framing.md", *sorted((ROOT / "docs" / "decisions").glob("0*.md"))]
TABLE_HEADING = "## Figures and their sources"
# Source kind -> (module, class) whose defaults a row quotes. Imported by name: a project made
# with `ranklab new --without abtest` has no readout, and its rows are not checked there.
CONFIGS = {
    "settings": ("ranklab.settings", "Settings"),
    "gate": ("models.gate", "GateConfig"),
    "readout": ("monitoring.abtest.readout", "ReadoutConfig"),
}


def config_default(kind: str, field: str) -> object:
    module, name = CONFIGS[kind]
    actual = getattr(importlib.import_module(module), name)()
    for part in field.split("."):
        actual = getattr(actual, part)
    return actual


def figure_rows(doc: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """(the text above the table, its rows as (figure, value, source))."""
    text = doc.read_text(encoding="utf-8")
    if TABLE_HEADING not in text:
        return text, []
    body, table = text.split(TABLE_HEADING, 1)
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("figure", "") and not set(cells[0]) <= {"-"}:
            rows.append((cells[0], cells[1], cells[2]))
    return body, rows


def problem(value: str, source: str, body: str) -> str | None:
    """Why the row does not hold, or None."""
    if value not in body:
        return f"{value!r} is in the sources table but not quoted in the text"
    kind, _, field = source.partition(":")
    if kind in CONFIGS and field:
        try:
            actual = config_default(kind, field)
        except ModuleNotFoundError:
            return None  # a stage `ranklab new` left out: nothing to check the figure against
        number = float(value.replace(",", "").rstrip("%"))
        return None if float(actual) == number else f"{source} is {actual}, the doc says {value}"
    path = ROOT / source
    if not path.is_file():
        return f"source {source} is neither a file nor a known setting"
    if value not in path.read_text(encoding="utf-8"):
        return f"{value!r} no longer appears in {source}"
    return None


def test_the_documents_exist_and_each_quotes_its_figures_with_their_sources():
    assert (ROOT / "docs" / "problem-framing.md").is_file()
    assert len(DOCS) >= 5, DOCS  # problem framing and at least four decision records
    _, rows = figure_rows(ROOT / "docs" / "problem-framing.md")
    assert len(rows) >= 10


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_quoted_figure_agrees_with_its_source(doc):
    body, rows = figure_rows(doc)
    problems = [
        f"{figure}: {why}"
        for figure, value, source in rows
        if (why := problem(value, source, body))
    ]
    assert not problems, "\n".join(problems)


def test_a_figure_that_drifted_from_its_source_is_caught():
    body = "the default data has 2,001 users and a 99 ms budget"
    assert "no longer appears in README.md" in problem("2,001", "README.md", body)
    assert "the doc says 99" in problem("99", "settings:serving.feature_timeout_ms", body)
    assert "not quoted in the text" in problem("2,000", "README.md", body)
    assert problem("2,000", "README.md", "2,000 users") is None


def test_the_readme_links_the_documents():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in ("docs/problem-framing.md", "docs/decisions/"):
        assert re.search(rf"\]\({re.escape(target)}", readme), target


def test_the_model_cards_risk_table_names_watchers_and_runbooks_that_exist():
    """The generated card's risks point at real runbooks, metrics and monitoring checks."""
    from models.model_card import RISKS

    metrics = (ROOT / "serving" / "metrics.py").read_text(encoding="utf-8")
    monitoring = (ROOT / "pipelines" / "defs" / "monitoring_assets.py").read_text()
    for _mode, _who, watch, runbook in RISKS:
        assert (ROOT / runbook).is_file(), runbook
        for name in re.findall(r"`(ranklab_\w+)`", watch):
            assert f'"{name}"' in metrics, name
        if "`monitoring_window`" in watch:
            assert "def monitoring_window" in monitoring
