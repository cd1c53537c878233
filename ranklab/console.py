"""The terminal a person watches, and a run that keeps library output off it.

``ranklab run`` and ``ranklab drift-demo`` print one line per finished step. Everything
else a run writes (Dagster's event log, Feast's and MLflow's prints, third-party warnings)
goes to a log file under the state folder, which the run names. ``quiet_output`` does the
redirection; code that draws on the terminal (the ranker's progress bar) writes to
``console()``, which is the real terminal even while the output is redirected.

Warnings raised from ranklab's own modules are never sent to the file: they print on the
terminal, so a deprecated call of ours is seen the day it appears.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO

# The top-level packages that are ranklab's own code (pyproject's packages.find).
OWN_PACKAGES = (
    "ranklab",
    "features",
    "models",
    "serving",
    "monitoring",
    "pipelines",
    "simulation",
    "cli",
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

_console: TextIO | None = None


def console() -> TextIO:
    """The terminal: the real stderr, even inside ``quiet_output``."""
    return _console if _console is not None else sys.stderr


def is_own_file(filename: str) -> bool:
    """Whether ``filename`` is a module of ranklab's own packages (not the venv's)."""
    try:
        relative = Path(filename).resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        return False
    return relative.parts[0] in OWN_PACKAGES if relative.parts else False


@contextmanager
def held_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Hold the warnings raised inside (a command's imports, before it knows its log file);
    ``quiet_output(log, held)`` then sends each where it belongs."""
    with warnings.catch_warnings(record=True) as held:
        warnings.simplefilter("default")  # each once per place, as Python shows them
        yield held


@contextmanager
def quiet_output(log: TextIO, held: Sequence[warnings.WarningMessage] = ()) -> Iterator[TextIO]:
    """Send stdout, stderr and third-party warnings to ``log``; yield the real stdout.
    ``held`` (from ``held_warnings``) are sent the same way first."""
    global _console
    terminal, previous_console = sys.stderr, _console
    lines = sys.stdout
    previous_showwarning = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        target = terminal if is_own_file(filename) else log
        target.write(warnings.formatwarning(message, category, filename, lineno, line))

    _console, warnings.showwarning = terminal, showwarning
    for w in held:
        showwarning(w.message, w.category, w.filename, w.lineno, line=w.line)
    try:
        with redirect_stdout(log), redirect_stderr(log):
            yield lines
    finally:
        _console, warnings.showwarning = previous_console, previous_showwarning
