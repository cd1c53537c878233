"""What a person sees while a Dagster job runs: one line per finished asset, not the event log.

``RunProgress`` is a logging handler behind a Dagster logger (``logger_defs``). For every
record it writes Dagster's full event log line to the run's log file; from the structured
events it prints, on the terminal:

- one line per materialized asset as its step finishes: name, seconds, its key figure
  (rows, feature views, the decision ...: ``key_figure``, from the asset's own metadata);
- one line per asset whose checks ran: how many passed, and each failed check by name;
- a failed step in full: the step, the error and its stack;
- the steps that were skipped because something upstream failed.

Nothing here knows the assets: a new asset gets a line from the metadata it records.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TextIO

import dagster as dg
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata

NAME_WIDTH = 22
FIGURE_CHARS = 110  # one terminal line, even for an asset with many row counts
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


@dataclass
class _CheckTally:
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


class RunProgress(logging.Handler):
    """Prints the run's progress on ``out`` and writes every record to ``log``."""

    def __init__(
        self, out: TextIO, log: TextIO, indent: str = "  ", asset_lines: bool = True
    ) -> None:
        super().__init__(level=logging.DEBUG)
        self.out, self.log, self.indent = out, log, indent
        self.asset_lines = asset_lines  # False: print failures only (a run that repeats often)
        self.planned: list[str] = []  # the job's steps in order (with_progress sets them)
        self._formatter = logging.Formatter(LOG_FORMAT)
        self._started: dict[str, float] = {}  # step key -> record time
        self._materialized: dict[str, list[tuple[str, dict[str, object]]]] = defaultdict(list)
        self._checks: dict[str, _CheckTally] = defaultdict(_CheckTally)  # asset -> tally
        self._check_steps: dict[str, str] = {}  # check step key -> the asset it checked

    def emit(self, record: logging.LogRecord) -> None:
        self.log.write(self._formatter.format(record) + "\n")
        if not has_log_record_metadata(record):
            return
        event = get_log_record_metadata(record).get("dagster_event")
        if event is not None:
            self._on_event(event, record.created)

    def _on_event(self, event: dg.DagsterEvent, at: float) -> None:
        step, kind = event.step_key or "", event.event_type
        if event.is_step_start:
            self._started[step] = at
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.step_materialization_data.materialization
            metadata = {k: v.value for k, v in mat.metadata.items()}
            self._materialized[step].append((mat.asset_key.to_user_string(), metadata))
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            self._on_check(step, event.asset_check_evaluation_data)
        elif event.is_step_success:
            self._on_step_success(step, at - self._started.get(step, at))
        elif event.is_step_failure:
            self._on_step_failure(step, event)
        elif kind in (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
            self._flush_checks()
            not_run = [name for name in self.planned if name not in self._started]
            if kind == dg.DagsterEventType.RUN_FAILURE and not_run:
                self._print(f"not run (upstream failed): {', '.join(not_run)}")

    def _on_check(self, step: str, evaluation) -> None:
        asset = evaluation.asset_key.to_user_string()
        tally = self._checks[asset]
        self._check_steps[step] = asset
        if evaluation.passed:
            tally.passed += 1
            return
        tally.failed.append(evaluation.check_name)
        why = evaluation.description or ""
        self._print(f"FAILED check {evaluation.check_name} on {asset}: {why}".rstrip(": "))

    def _on_step_success(self, step: str, seconds: float) -> None:
        if step in self._check_steps:
            self._checks[self._check_steps[step]].seconds += seconds
            return
        self._flush_checks()  # the checks that ran before this step, on one line per asset
        for asset, metadata in self._materialized.pop(step, []) or [(step, {})]:
            if self.asset_lines:
                self._print(_line(asset, seconds, key_figure(metadata)))

    def _on_step_failure(self, step: str, event: dg.DagsterEvent) -> None:
        error = event.step_failure_data.error
        if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
            return  # the failed checks are printed by name above; Dagster's stack adds nothing
        self._flush_checks()
        detail = error.to_string() if error is not None else "no error recorded"
        self._print(f"FAILED {step}:\n{detail}".rstrip())

    def _flush_checks(self) -> None:
        for asset, tally in self._checks.items():
            if self.asset_lines is False and not tally.failed:
                continue
            total = tally.passed + len(tally.failed)
            figure = f"{tally.passed}/{total} checks passed"
            if tally.failed:
                figure += f"; FAILED: {', '.join(tally.failed)}"
            self._print(_line(f"{asset} checks", tally.seconds, figure))
        self._checks.clear()
        self._check_steps.clear()

    def _print(self, text: str) -> None:
        self.out.write(f"{self.indent}{text}\n")
        self.out.flush()


def _line(name: str, seconds: float, figure: str) -> str:
    return f"{name:<{NAME_WIDTH}} {seconds:5.1f} s  {figure}".rstrip()


def key_figure(metadata: dict[str, object]) -> str:
    """The figure that says an asset did what it should, from its metadata: its ``headline``
    when it records one, else its row counts, else the first scalar it records."""
    if "headline" in metadata:
        return _short(str(metadata["headline"]))
    counts = {k.removeprefix("rows."): v for k, v in metadata.items() if k.startswith("rows.")}
    if counts:
        return _short(", ".join(f"{name} {_number(n)}" for name, n in counts.items()))
    if "rows" in metadata:
        features = f" x {metadata['features']} features" if "features" in metadata else ""
        return f"{_number(metadata['rows'])} rows{features}"
    for key, value in metadata.items():
        if isinstance(value, str | int | float | bool) and not key.startswith("path"):
            return _short(f"{key} {value}")
    return ""


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= FIGURE_CHARS else text[: FIGURE_CHARS - 3] + "..."


def progress_logger(handler: RunProgress, name: str = "ranklab.run") -> dg.LoggerDefinition:
    """A Dagster logger definition whose records go to ``handler`` (nowhere else)."""

    def build(_init_context) -> logging.Logger:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False  # the root logger must not print the event log again
        return logger

    return dg.LoggerDefinition(build, description="ranklab: progress lines and the event log")
