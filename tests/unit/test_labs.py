"""Workshop checkpoints (cli/labs.py): the code half in a throwaway git repository, the
state half with a stand-in pipeline. tests/integration/test_lab_checkpoints.py runs the real pipeline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cli import labs
from cli.labs import LABS, LabError, get_lab, start_lab
from ranklab.settings import REPO_ROOT, DataSettings, Settings, get_settings

LEAKY_FILE = "features/aggregates.py"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository holding the files labs edit, committed, plus the lab guides."""
    root = tmp_path / "repo"
    for path in labs.lab_files():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("committed\n")
    (root / labs.LABS_DIR).mkdir(parents=True)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    return root


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def fake_pipeline(settings: Settings, decision: str = "champion") -> None:
    """Stands in for `ranklab run`: leaves a recognisable state and a gate report."""
    (settings.root / "mlflow").mkdir(parents=True)
    (settings.root / "mlflow" / "mlflow.db").write_text("registry")
    (settings.reports_dir / "gate").mkdir(parents=True)
    (settings.reports_dir / "gate" / "ranker-v1.json").write_text(
        json.dumps({"decision": decision})
    )


def test_an_unknown_lab_is_refused_with_the_list_of_labs():
    with pytest.raises(LabError, match=r"no lab 99; the labs are 1 \(tour\), 2 \(label-leakage\)"):
        get_lab(99)


def test_edits_to_lab_files_are_not_discarded_without_force(repo, settings):
    (repo / LEAKY_FILE).write_text("my half-done work\n")
    (settings.root / "keep").mkdir(parents=True)

    with pytest.raises(LabError, match=rf"edits that starting lab 2 would discard: {LEAKY_FILE}"):
        start_lab(settings, 2, repo=repo, run_pipeline=fake_pipeline, echo=lambda _: None)

    assert (repo / LEAKY_FILE).read_text() == "my half-done work\n"
    assert (settings.root / "keep").is_dir()  # refused before the state was touched


def test_force_restores_the_committed_code_and_the_state(repo, settings):
    (repo / LEAKY_FILE).write_text("my half-done work\n")

    started = start_lab(
        settings, 2, force=True, repo=repo, run_pipeline=fake_pipeline, echo=lambda _: None
    )

    assert started.restored_files == [LEAKY_FILE]
    assert (repo / LEAKY_FILE).read_text() == "committed\n"
    assert started.built_checkpoint
    assert (settings.root / "mlflow" / "mlflow.db").read_text() == "registry"


def test_a_built_checkpoint_is_restored_without_running_the_pipeline(repo, settings):
    start_lab(settings, 3, repo=repo, run_pipeline=fake_pipeline, echo=lambda _: None)
    (settings.root / "mlflow" / "mlflow.db").write_text("a participant's experiments")
    (settings.root / "monitoring").mkdir()

    def no_pipeline(_: Settings) -> None:
        raise AssertionError("the checkpoint exists: nothing should be rebuilt")

    started = start_lab(settings, 4, repo=repo, run_pipeline=no_pipeline, echo=lambda _: None)

    assert not started.built_checkpoint
    assert (settings.root / "mlflow" / "mlflow.db").read_text() == "registry"
    assert not (settings.root / "monitoring").exists()
    assert (settings.root / labs.CHECKPOINTS_FOLDER / "trained").is_dir()


def test_the_empty_checkpoint_clears_the_state_but_keeps_the_checkpoints(repo, settings):
    start_lab(settings, 2, repo=repo, run_pipeline=fake_pipeline, echo=lambda _: None)

    start_lab(settings, 1, repo=repo, run_pipeline=fake_pipeline, echo=lambda _: None)

    assert [p.name for p in settings.root.iterdir()] == [labs.CHECKPOINTS_FOLDER]


def test_a_checkpoint_without_a_champion_is_not_kept(repo, settings):
    def refused(s: Settings) -> None:
        fake_pipeline(s, decision="rejected")

    with pytest.raises(LabError, match=r"promoted no champion \(ranker-v1: rejected\)"):
        start_lab(settings, 3, repo=repo, run_pipeline=refused, echo=lambda _: None)

    assert not (settings.root / labs.CHECKPOINTS_FOLDER / "trained").exists()


def test_a_lab_without_a_code_solution_says_so(repo, settings):
    with pytest.raises(LabError, match="lab 4 has no code solution"):
        start_lab(settings, 4, solution=True, repo=repo, run_pipeline=fake_pipeline)


@pytest.mark.parametrize("lab", [lab for lab in LABS if lab.touches], ids=lambda lab: lab.name)
def test_each_code_lab_has_a_guide_and_a_solution_that_applies_to_this_code(lab):
    assert lab.guide().is_file(), lab.guide()
    patch = lab.solution_patch()
    assert patch is not None, f"{lab.name} edits {lab.touches} but ships no solution patch"
    touched = {
        line.removeprefix("+++ b/")
        for line in patch.read_text().splitlines()
        if line.startswith("+++ b/")
    }
    assert touched <= set(lab.touches), f"the patch edits {touched}, the lab declares {lab.touches}"
    # --check only reads: the working tree is left as it is.
    _git(REPO_ROOT, "apply", "--check", str(patch))


def test_every_lab_has_a_guide():
    missing = [str(lab.guide()) for lab in LABS if not lab.guide().is_file()]
    assert not missing


def test_settings_survive_the_trip_through_the_environment(tmp_path, monkeypatch):
    settings = Settings(state_dir=tmp_path / "s", seed=3, data=DataSettings(scale=0.2, n_days=28))
    for name, value in labs.settings_env(settings).items():
        monkeypatch.setenv(name, value)

    assert get_settings() == settings
