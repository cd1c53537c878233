"""Run a Dagster job in this process, against the persistent instance under the state
folder (so ``make ui`` shows the run afterwards), and print what it produced.

The terminal gets one line per asset and the summary (``pipelines/progress.py``); Dagster's
full event log, and whatever the libraries print, go to ``<state>/logs/<job>-<time>.log``,
whose path the run prints. ``verbose`` puts Dagster's console log back on the terminal.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import dagster as dg

from pipelines.progress import RunProgress, progress_logger
from ranklab.console import quiet_output
from ranklab.settings import Settings, get_settings

PROGRESS_LOGGER = "ranklab"


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance whose runs ``dagster dev`` shows: DAGSTER_HOME under the state folder."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(Path(__file__).with_name("dagster.yaml"), home / "dagster.yaml")
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home))


def event_log_path(settings: Settings, job_name: str) -> Path:
    """A new file per run: ``<state>/logs/<job>-<UTC time>.log``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return settings.logs_dir / f"{job_name}-{stamp}.log"


@contextmanager
def run_output(
    log_path: Path, verbose: bool, held: Sequence[warnings.WarningMessage] = ()
) -> Iterator[tuple[TextIO, TextIO]]:
    """(terminal, log): the log file opened; unless ``verbose``, library output and
    third-party warnings (``held`` ones first) redirected into it (``quiet_output``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log_path, "a", encoding="utf-8", buffering=1) as log,
        _shown(held) if verbose else quiet_output(log, held) as terminal,
    ):
        yield terminal, log


@contextmanager
def _shown(held: Sequence[warnings.WarningMessage]) -> Iterator[TextIO]:
    for w in held:  # verbose: every warning on the terminal, as Python shows them
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, line=w.line)
    yield sys.stdout


@dataclass(frozen=True)
class Reporter:
    """Where a command's runs report: the terminal, the log file, and whether verbose."""

    terminal: TextIO
    log: TextIO
    verbose: bool = False
    indent: str = "  "

    def job(
        self, job: dg.JobDefinition, asset_lines: bool = True
    ) -> tuple[dg.JobDefinition, dict[str, object]]:
        """``job`` reporting here (``with_progress``); ``asset_lines=False``: failures only."""
        handler = RunProgress(self.terminal, self.log, self.indent, asset_lines)
        return with_progress(job, handler, self.verbose)


def with_progress(
    job: dg.JobDefinition, handler: RunProgress, verbose: bool
) -> tuple[dg.JobDefinition, dict[str, object]]:
    """``job`` with the progress logger, and the run config that turns it on. Configuring a
    logger turns Dagster's default console logger off; ``verbose`` turns it back on."""
    handler.planned = [node.name for node in job.nodes_in_topological_order]
    loggers = {PROGRESS_LOGGER: progress_logger(handler)}
    config: dict[str, object] = {PROGRESS_LOGGER: {}}
    if verbose:
        loggers["console"] = dg.colored_console_logger
        config["console"] = {"config": {"log_level": "DEBUG"}}
    return job.with_logger_defs(loggers), {"loggers": config}


def run_job(
    job_name: str = "lifecycle",
    scale: float | None = None,
    verbose: bool = False,
    settings: Settings | None = None,
    evaluation_table: bool = True,
) -> bool:
    """Run ``job_name``, print its progress and summary; True when it succeeded."""
    settings = settings or get_settings()
    if scale is not None:
        settings = settings.model_copy(
            update={"data": settings.data.model_copy(update={"scale": scale})}
        )
    log_path = event_log_path(settings, job_name)
    print(f"ranklab run: the {job_name} job (event log: {log_path})", flush=True)
    started = time.perf_counter()
    with run_output(log_path, verbose) as (terminal, log):
        # Imported here: the libraries' import-time warnings belong in the log too.
        from pipelines.definitions import build_definitions

        job = build_definitions(settings).resolve_job_def(job_name)
        job, run_config = with_progress(job, RunProgress(terminal, log), verbose)
        with dagster_instance(settings) as instance:
            result = job.execute_in_process(
                instance=instance, run_config=run_config, raise_on_error=False
            )
    from pipelines.summary import print_summary

    seconds = time.perf_counter() - started
    print_summary(result, settings, seconds, log_path=log_path, evaluation_table=evaluation_table)
    return result.success
