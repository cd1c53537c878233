"""``ranklab new``: a new project generated from this checkout is renamed throughout, has a
fresh state and one commit of history, can leave stages out, and passes its own tests.

The slow test runs the generated project's ``make test-fast`` with this checkout's venv
(``VENV=...``): the generated packages are imported from the generated folder (the working
directory comes first on ``sys.path``), which a test planted in the new project proves.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli import template
from cli.template import STAGES, TemplateError, create_project, plan_project
from ranklab.settings import REPO_ROOT, get_settings

pytestmark = pytest.mark.integration

# Not the template's own name, which is refused (this test also runs in generated projects).
NAME = "shoprank" if template.TEMPLATE_NAME != "shoprank" else "searchlab"


def mentions_of_ranklab(project: Path) -> list[str]:
    """``path:line`` of every line that still says ranklab, outside ``.git``."""
    found = []
    for path in sorted(project.rglob("*")):
        if ".git" in path.relative_to(project).parts or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if "ranklab" in line.lower():
                found.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    return found


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("generated") / NAME
    create_project(target, NAME)
    return target


# ---- what a generated project looks like ----
def test_the_name_replaces_ranklab_everywhere_but_the_origin_note_and_the_licence(project):
    licence = (REPO_ROOT / "LICENSE").read_text().splitlines()
    kept_in_licence = [
        f"LICENSE:{n}: {line.strip()}" for n, line in enumerate(licence, 1) if "ranklab" in line
    ]
    assert mentions_of_ranklab(project) == [
        *kept_in_licence,
        "README.md:3: Generated from ranklab with `ranklab new`.",
    ]
    pyproject = (project / "pyproject.toml").read_text()
    assert f'name = "{NAME}"' in pyproject
    assert f'{NAME} = "cli.main:app"' in pyproject
    assert f'env_prefix="{NAME.upper()}_"' in (project / NAME / "settings.py").read_text()
    assert (project / "README.md").read_text().startswith(f"# {NAME}\n")
    assert f"$(BIN)/{NAME} run" in (project / "Makefile").read_text()


def test_it_has_no_state_venv_or_history_but_one_commit_of_every_file(project):
    for absent in (".state", ".venv", "ranklab", "ranklab.egg-info"):
        assert not (project / absent).exists(), absent
    assert not list(project.rglob("__pycache__"))
    assert git(project, "log", "--format=%s").splitlines() == [f"{NAME}: generated from ranklab"]
    assert git(project, "status", "--porcelain") == ""
    tracked = set(git(project, "ls-files").splitlines())
    assert f"{NAME}/settings.py" in tracked and "Makefile" in tracked
    # Every source file of the template, renamed: nothing lost on the way.
    expected = {template.rename_path(p, NAME) for p in template.source_files()}
    assert tracked == expected


def test_its_files_keep_their_permissions(project):
    for path in template.source_files():
        source_mode = (REPO_ROOT / path).stat().st_mode & 0o777
        assert (project / template.rename_path(path, NAME)).stat().st_mode & 0o777 == source_mode


def ruff(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=project, capture_output=True, text=True
    )


def test_it_is_lint_clean_like_the_template(project):
    """The new name sorts elsewhere among the imports; the generator re-sorts them."""
    checked = ruff(project, "check", ".")
    assert checked.returncode == 0, checked.stdout[-3000:]
    formatted = ruff(project, "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout[-3000:]


# ---- refusals: clear errors, nothing written ----
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Shop-Rank", r"invalid project name 'Shop-Rank'.*e\.g\. 'shop_rank'"),
        ("1rank", r"invalid project name '1rank': use 2-40 lowercase"),
        ("ranklab", "reserved"),
        ("class", "reserved"),
        ("features", "would shadow the project folder 'features'"),
        ("json", "would shadow a standard-library module 'json'"),
    ],
)
def test_invalid_names_are_refused_and_nothing_is_written(tmp_path, name, message):
    with pytest.raises(TemplateError, match=message):
        create_project(tmp_path / "new", name)
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_target_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(TemplateError, match="exists and is not an empty folder"):
        create_project(tmp_path, NAME)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_an_empty_target_folder_is_used(tmp_path):
    create_project(tmp_path / "empty", NAME, git=False)
    assert (tmp_path / "empty" / NAME / "settings.py").is_file()  # the contracts package, renamed
    assert (tmp_path / "empty" / "cli" / "main.py").is_file()
    assert not (tmp_path / "empty" / ".git").exists()


def test_an_unknown_stage_is_refused_with_the_choices(tmp_path):
    with pytest.raises(TemplateError, match=r"unknown stage\(s\) to leave out: nope; choose from"):
        create_project(tmp_path / "new", NAME, without=["nope"])


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_git(folder: Path, name: str) -> str:
        raise RuntimeError("git broke")

    monkeypatch.setattr(template, "_git_init", broken_git)
    with pytest.raises(RuntimeError, match="git broke"):
        create_project(tmp_path / "new", NAME)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_reports_a_refusal_as_an_error_and_exit_code_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "new", str(tmp_path / "x"), "--name", "Bad Name"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "error: invalid project name 'Bad Name'" in result.stderr
    assert not (tmp_path / "x").exists()


# ---- leaving stages out ----
def test_a_stage_still_imported_elsewhere_is_refused_naming_the_importer(tmp_path):
    """A tiny template whose pipeline imports the A/B readout: leaving it out would break."""
    (tmp_path / "monitoring" / "abtest").mkdir(parents=True)
    (tmp_path / "monitoring" / "abtest" / "readout.py").write_text("X = 1\n")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "jobs.py").write_text("from monitoring.abtest.readout import X\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    with pytest.raises(
        TemplateError, match=r"cannot leave out 'abtest': still imported by pipelines/jobs.py"
    ):
        plan_project(NAME, (STAGES["abtest"],), root=tmp_path)


def test_a_stage_without_files_is_refused(tmp_path):
    (tmp_path / "README.md").write_text("# x\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    with pytest.raises(TemplateError, match="stage 'benchmarks' has no files"):
        plan_project(NAME, (STAGES["benchmarks"],), root=tmp_path)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_leaving_a_stage_out_drops_its_files_commands_and_make_targets(tmp_path, stage):
    owned = template.stage_files(STAGES[stage], template.source_files())
    if not owned:
        pytest.skip(f"this checkout has no {stage} stage")
    project = create_project(tmp_path / "new", NAME, without=[stage], git=False).path
    for path in owned:
        assert not (project / template.rename_path(path, NAME)).exists(), path
    makefile = (project / "Makefile").read_text()
    for target in STAGES[stage].make_targets:
        assert f"\n{target}:" not in makefile
    help_text = subprocess.run(
        [sys.executable, "-m", "cli.main", "--help"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in STAGES[stage].cli_commands:
        assert f" {command} " not in help_text
    assert " run " in help_text  # the CLI still loads, its other commands intact
    checked = ruff(project, "check", ".")  # nothing left behind unused
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert f"without: {stage}" in (project / "README.md").read_text()


# ---- the generated project works ----
WHERE_FROM_TEST = '''
"""Planted by ranklab's template test: the packages under test are this project's own."""
from pathlib import Path

import features
import models
import {name}

PROJECT = Path(__file__).resolve().parents[2]


def test_the_packages_come_from_this_project():
    for package in (features, models, {name}):
        assert Path(package.__file__).resolve().is_relative_to(PROJECT), package.__file__
'''


@pytest.mark.slow
@pytest.mark.timeout(1500)  # ~3 min on 2 quiet cores; 6.5 min measured on a loaded machine
def test_the_generated_project_passes_its_own_tests(tmp_path):
    project = create_project(tmp_path / NAME, NAME).path
    planted = project / "tests" / "unit" / "test_where_from.py"
    planted.write_text(WHERE_FROM_TEST.format(name=NAME))
    venv = Path(sys.prefix)  # the venv running these tests
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANKLAB_", "DAGSTER_"))}
    result = subprocess.run(
        # `-o` (assume old): never reinstall into the shared venv, whatever the file times say.
        ["make", "test-fast", f"VENV={venv}", "-o", f"{venv}/.installed"],
        cwd=project,
        env={
            **env,
            "DAGSTER_HOME": str(project / ".state" / "dagster"),
            # The LETOR sample sits beside this checkout, not beside the generated one.
            f"{NAME.upper()}_LETOR_DIR": str(get_settings().letor_dir),
        },
        capture_output=True,
        text=True,
        timeout=1400,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "tests/unit/test_where_from.py ." in result.stdout
    summary = re.findall(r"^=+ (.* in [0-9.]+s.*) =+$", result.stdout, flags=re.MULTILINE)
    assert summary and " passed" in summary[-1], output[-3000:]
    assert "failed" not in summary[-1] and "error" not in summary[-1], summary[-1]
