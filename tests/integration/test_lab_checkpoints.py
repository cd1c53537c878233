"""A workshop checkpoint built by the real pipeline restores to a working state.

`ranklab run` (the default data, as a participant's `make lab`) builds the `trained`
checkpoint once; the participant then wrecks the state; starting the next lab puts back a
state whose registry, model artifacts and training set all work again, with no pipeline run.
The code half runs in a throwaway git repository (tests/unit/test_labs.py covers it in
detail).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from cli import labs
from features.training_set import FRAME_FILE, load_training_set
from models.pyfunc import score
from models.registry import Registry
from ranklab.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    for path in labs.lab_files():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("committed\n")
    (root / labs.LABS_DIR).mkdir(parents=True)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(
            ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(root), *command],
            check=True,
        )
    return root


def test_a_trained_checkpoint_restores_a_working_state(tmp_path, repo):
    # The default data, as the notebooks' state: a lab needs a champion, and at a tenth of the
    # data the gate's debiased metric cannot show the ranker beats popularity (55 test
    # sessions with a click: +0.013 [-0.043, 0.065]), so no checkpoint would be kept.
    settings = Settings(state_dir=tmp_path / "state")
    quiet = lambda _: None  # noqa: E731

    first = labs.start_lab(settings, 2, repo=repo, echo=quiet)  # builds with `ranklab run`
    assert first.built_checkpoint
    assert (settings.training_dir / FRAME_FILE).exists()
    # Read from the report file: this process must not hold the registry's SQLite file open
    # across the restore (a long-lived reader keeps the old file; see cli/labs.py).
    decision = json.loads((settings.reports_dir / "gate" / "ranker-v1.json").read_text())

    # A participant's afternoon: data deleted, registry file damaged.
    shutil.rmtree(settings.root / "data")
    (settings.root / "mlflow" / "mlflow.db").write_bytes(b"not a database")

    second = labs.start_lab(
        settings,
        3,
        repo=repo,
        run_pipeline=lambda _: pytest.fail("restoring must not run the pipeline"),
        echo=quiet,
    )

    assert not second.built_checkpoint
    registry = Registry(settings)
    expected = {} if decision["decision"] == "rejected" else {decision["decision"]: "1"}
    assert registry.aliases() == expected
    training = load_training_set(settings)
    test = training.part("test")
    scores = score(registry.load(1), test)  # artifacts found where MLflow recorded them
    assert len(scores) == len(test)
