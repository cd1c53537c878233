"""Workshop checkpoints: ``ranklab lab N`` (``make lab N=3``) puts a participant at the start
of lab N, however far behind or ahead they are (docs/workshop/).

A lab starts from two things, and restoring puts both back:

- **a state folder**: none at all (``empty``), or the one ``ranklab run`` leaves
  (``trained``). ``trained`` is built once, by the real pipeline, and kept as a copy under
  ``<state>/checkpoints/trained``; restoring copies it back over the state folder (seconds,
  where re-running the pipeline takes a minute). The copy is built in the state folder itself
  because MLflow and Feast record absolute paths: a copy restored where it was made stays valid.
- **the code, without half-done lab edits**: labs change files (a leaky feature, a worse
  model, a gate that decides on raw clicks); their solutions are patches beside the lab text
  (``NN-slug.patch``). Restoring checks out every file any lab touches, after refusing to
  discard a participant's edits unless ``force`` is given.

Everything is checked before anything is changed: an unknown lab or unsaved edits leave both
the state and the code as they were.

Stop what holds the state open first (`make serve`, `make ui`, a notebook's kernel): the
files are replaced, and a process that keeps the old MLflow SQLite file open goes on reading
the old one (or fails on it) until it restarts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ranklab.settings import REPO_ROOT, Settings

Checkpoint = Literal["empty", "trained"]
CHECKPOINTS_FOLDER = "checkpoints"
LABS_DIR = Path("docs") / "workshop" / "labs"


class LabError(RuntimeError):
    """A lab cannot be started as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Lab:
    number: int
    slug: str
    title: str
    checkpoint: Checkpoint  # the state the lab starts from
    touches: tuple[str, ...] = ()  # repository files the lab edits (restored from git)

    @property
    def name(self) -> str:
        return f"{self.number:02d}-{self.slug}"

    def guide(self, repo: Path = REPO_ROOT) -> Path:
        return repo / LABS_DIR / f"{self.name}.md"

    def solution_patch(self, repo: Path = REPO_ROOT) -> Path | None:
        """The solution's code change, for labs whose solution edits code."""
        patch = repo / LABS_DIR / f"{self.name}.patch"
        return patch if patch.exists() else None


LABS: tuple[Lab, ...] = (
    Lab(1, "tour", "Run the lifecycle and find your way around", "empty"),
    Lab(2, "label-leakage", "Leak the label and see what catches it", "trained",
        ("features/aggregates.py",)),
    Lab(3, "worse-model", "Push a worse model and watch the gate refuse it", "trained",
        ("models/train.py",)),
    Lab(4, "broken-feature", "Break a feature upstream and follow the alert", "trained"),
    Lab(5, "underpowered-ab", "Run an underpowered A/B test and read it honestly", "trained"),
    Lab(6, "position-bias", "Decide on raw clicks and watch the naive ranker win the wrong way",
        "trained", ("models/evaluation.py",)),
)  # fmt: skip


def get_lab(number: int) -> Lab:
    for lab in LABS:
        if lab.number == number:
            return lab
    known = ", ".join(f"{lab.number} ({lab.slug})" for lab in LABS)
    raise LabError(f"no lab {number}; the labs are {known}")


# ---- code -----------------------------------------------------------------------------------


def lab_files(labs: tuple[Lab, ...] = LABS) -> list[str]:
    """Every file some lab edits: each lab starts from clean code, whatever was done before."""
    return sorted({path for lab in labs for path in lab.touches})


def edited_files(files: list[str], repo: Path = REPO_ROOT) -> list[str]:
    """Which of ``files`` differ from the last commit (``git status``)."""
    if not files:
        return []
    status = _git(repo, "status", "--porcelain", "--", *files)
    return sorted(line[3:].strip() for line in status.splitlines() if line.strip())


def restore_code(files: list[str], repo: Path = REPO_ROOT) -> list[str]:
    """Check out ``files`` as committed; returns those that had changed."""
    changed = edited_files(files, repo)
    if changed:
        _git(repo, "checkout", "--", *changed)
    return changed


def apply_solution(lab: Lab, repo: Path = REPO_ROOT) -> Path:
    """Apply the lab's solution patch to the code (``git apply``); checked first."""
    patch = lab.solution_patch(repo)
    if patch is None:
        raise LabError(f"lab {lab.number} has no code solution: its guide shows the steps")
    try:
        _git(repo, "apply", "--check", str(patch))
    except LabError as error:
        raise LabError(
            f"the solution of lab {lab.number} does not apply to the current code "
            f"(restore it first: ranklab lab {lab.number} --force): {error}"
        ) from error
    _git(repo, "apply", str(patch))
    return patch


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"git {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


# ---- state ----------------------------------------------------------------------------------

PipelineRunner = Callable[[Settings], None]


def checkpoint_dir(settings: Settings, name: Checkpoint) -> Path:
    return settings.root / CHECKPOINTS_FOLDER / name


def clear_state(settings: Settings) -> None:
    """Delete everything in the state folder except the checkpoints."""
    root = settings.root
    if not root.exists():
        return
    for entry in root.iterdir():
        if entry.name == CHECKPOINTS_FOLDER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def build_checkpoint(
    settings: Settings, name: Checkpoint, run_pipeline: PipelineRunner | None = None
) -> Path:
    """Make the state ``name`` in the state folder and keep a copy of it (atomically: a
    half-built checkpoint is never left under its final name)."""
    target = checkpoint_dir(settings, name)
    clear_state(settings)
    if name == "trained":
        (run_pipeline or run_lifecycle)(settings)
        require_champion(settings)
    partial = target.with_name(f".{name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for entry in settings.root.iterdir():
        if entry.name != CHECKPOINTS_FOLDER:
            _copy(entry, partial / entry.name)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def require_champion(settings: Settings) -> None:
    """The labs after the tour need a champion. The gate may refuse the first model for a
    reason outside the lab (a change to the code or the data under it), and a checkpoint
    without a champion would fail later and obscurely. Read from the gate's reports, not the
    registry: this process must not hold the SQLite file that a restore replaces."""
    reports = sorted((settings.reports_dir / "gate").glob("*.json"))
    decisions = {p.stem: json.loads(p.read_text(encoding="utf-8"))["decision"] for p in reports}
    if "champion" not in decisions.values():
        detail = ", ".join(f"{k}: {v}" for k, v in decisions.items()) or "no gate report"
        raise LabError(
            f"the pipeline ran but promoted no champion ({detail}); read "
            f"{settings.reports_dir / 'gate'} for why. If only latency_budget failed, the "
            "machine was busy: run again when it is quiet (`ranklab lab N --rebuild`)"
        )


def restore_state(settings: Settings, name: Checkpoint) -> None:
    """Replace the state folder's contents with the checkpoint's."""
    source = checkpoint_dir(settings, name)
    if name != "empty" and not source.is_dir():
        raise LabError(f"checkpoint {name!r} not built at {source}")
    clear_state(settings)
    settings.root.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        for entry in source.iterdir():
            _copy(entry, settings.root / entry.name)


def run_lifecycle(settings: Settings) -> None:
    """``ranklab run`` in a child process with these settings (what a participant would type)."""
    command = [str(Path(sys.executable).with_name("ranklab")), "run"]
    env = {**os.environ, **settings_env(settings), "DAGSTER_HOME": str(settings.dagster_home)}
    if subprocess.run(command, env=env).returncode != 0:
        raise LabError("`ranklab run` failed while building the checkpoint; see its output above")


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as RANKLAB_ environment variables (scalars; sections with ``__``)."""
    env: dict[str, str] = {}

    def add(prefix: str, values: Mapping[str, object]) -> None:
        for key, value in values.items():
            if isinstance(value, Mapping):
                add(f"{prefix}{key.upper()}__", value)
            elif isinstance(value, str | int | float | bool | Path):
                env[f"{prefix}{key.upper()}"] = str(value)

    add("RANKLAB_", settings.model_dump())
    env["RANKLAB_STATE_DIR"] = str(settings.root)
    return env


def _copy(source: Path, target: Path) -> None:
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


# ---- a lab ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabStart:
    lab: Lab
    restored_files: list[str]
    built_checkpoint: bool
    solution: Path | None


def start_lab(
    settings: Settings,
    number: int,
    force: bool = False,
    rebuild: bool = False,
    solution: bool = False,
    repo: Path = REPO_ROOT,
    run_pipeline: PipelineRunner | None = None,
    echo: Callable[[str], None] = print,
) -> LabStart:
    """Restore the code and the state lab ``number`` starts from (and its solution, if asked)."""
    lab = get_lab(number)
    files = lab_files()
    edited = edited_files(files, repo)
    if edited and not force:
        raise LabError(
            f"these files have edits that starting lab {number} would discard: "
            f"{', '.join(edited)}. Save them elsewhere (git diff > my-work.patch), then run "
            f"again with --force (make lab N={number} FORCE=1)"
        )
    if solution and lab.solution_patch(repo) is None:
        raise LabError(f"lab {number} has no code solution: its guide shows the steps")
    restored = restore_code(files, repo)
    for path in restored:
        echo(f"restored {path} as committed")
    built = False
    if lab.checkpoint != "empty" and (
        rebuild or not checkpoint_dir(settings, lab.checkpoint).is_dir()
    ):
        echo(f"building the {lab.checkpoint!r} checkpoint once (the pipeline, about a minute)")
        build_checkpoint(settings, lab.checkpoint, run_pipeline)
        built = True
    restore_state(settings, lab.checkpoint)
    echo(f"state {settings.root}: {lab.checkpoint}")
    patch = apply_solution(lab, repo) if solution else None
    if patch is not None:
        echo(f"applied the solution {patch.name}")
    echo(f"lab {lab.number}: {lab.title}. Read {lab.guide(repo).relative_to(repo)}")
    return LabStart(lab, restored, built, patch)
