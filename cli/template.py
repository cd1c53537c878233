"""``ranklab new``: start a new project from this one.

The new project is a copy of this checkout's source files (what git tracks, plus new files
git does not ignore: never the state folder, the venv or the history), renamed throughout,
optionally without some lifecycle stages, with a fresh git repository of one commit.

Renaming is a word replacement of ``ranklab`` in every text file, keeping its case
(``ranklab`` -> ``name``, ``RANKLAB_`` -> ``NAME_``, ``Ranklab`` -> ``Name``): the package
folder, imports, the distribution and CLI name, the settings' environment prefix, the Feast
project, the MLflow experiment, metric names. Two mentions are kept on purpose: the LICENSE
(the MIT licence asks that the copyright notice stays) and one line in the README saying where
the project came from.

Nothing is written unless everything succeeded: the project is built in a temporary folder
beside the target and renamed into place at the end.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ranklab.settings import REPO_ROOT

TEMPLATE_NAME = "ranklab"
CLI_MODULE = "cli/main.py"  # the command line, whose commands a left-out stage takes along
KEEP_VERBATIM = frozenset({"LICENSE"})  # the copyright notice must stay as it is
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
# Folder names the project already uses at the top level: a package of the same name would
# shadow one of them.
TOP_LEVEL_FOLDERS = frozenset(
    {
        "features",
        "models",
        "serving",
        "monitoring",
        "pipelines",
        "simulation",
        "cli",
        "tests",
        "benchmarks",
        "docs",
        "ops",
    }
)


class TemplateError(ValueError):
    """A request ``ranklab new`` refuses; the message says what is wrong."""


@dataclass(frozen=True)
class Stage:
    """A part of the lifecycle a new project may leave out.

    ``paths`` are glob patterns (relative to the repository root) of every file that belongs
    to the stage; ``package`` is its import path: after leaving the stage out no remaining
    module may import it, which is checked, so a stage that grew a dependency is refused
    with the names of the files that need it instead of producing a broken project.
    """

    name: str
    summary: str
    package: str
    paths: tuple[str, ...]
    cli_commands: tuple[str, ...] = ()
    make_targets: tuple[str, ...] = ()


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            name="abtest",
            summary="the A/B readout: power, lift, SRM, CUPED, interleaving; serving keeps "
            "its experiment switch, inert without a config",
            package="monitoring.abtest",
            paths=(
                "monitoring/abtest/*",
                "simulation/abtest.py",
                "benchmarks/abtest.py",
                "tests/*test_abtest*.py",
                "tests/*/abtest/*",
                "notebooks/*ab_readout*",
            ),
            cli_commands=("abtest",),
            make_targets=("abtest",),
        ),
        Stage(
            name="benchmarks",
            summary="quality and speed comparisons against peers: LightGBM, mlflow serve",
            package="benchmarks",
            paths=("benchmarks/*", "tests/*test_benchmark*.py"),
            make_targets=("bench",),
        ),
    )
}


@dataclass(frozen=True)
class NewProject:
    """What ``create_project`` made."""

    path: Path
    name: str
    files: int
    left_out: tuple[str, ...]
    commit: str | None


# ---- validation: everything is checked before anything is written ----
def check_name(name: str) -> str:
    """The new project's name: a snake_case Python package name that shadows nothing."""
    if not NAME_PATTERN.fullmatch(name):
        suggestion = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
        hint = (
            f" (e.g. {suggestion!r})" if suggestion and NAME_PATTERN.fullmatch(suggestion) else ""
        )
        raise TemplateError(
            f"invalid project name {name!r}: use 2-40 lowercase letters, digits and "
            f"underscores, starting with a letter{hint}"
        )
    if name == TEMPLATE_NAME or keyword.iskeyword(name):
        raise TemplateError(f"invalid project name {name!r}: it is reserved")
    if name in TOP_LEVEL_FOLDERS or name in sys.stdlib_module_names:
        raise TemplateError(
            f"invalid project name {name!r}: a package of that name would shadow "
            f"{'the project folder' if name in TOP_LEVEL_FOLDERS else 'a standard-library module'} "
            f"{name!r}"
        )
    return name


def check_target(target: Path) -> Path:
    """An absent or empty folder whose parent exists."""
    target = Path(target).expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TemplateError(f"target {target} exists and is not an empty folder")
    if not target.parent.is_dir():
        raise TemplateError(f"target's parent folder {target.parent} does not exist")
    source = REPO_ROOT.resolve()
    if target.resolve() == source or source in target.resolve().parents:
        raise TemplateError(f"target {target} is inside the template checkout {source}")
    return target


def check_stages(without: list[str]) -> tuple[Stage, ...]:
    unknown = sorted(set(without) - set(STAGES))
    if unknown:
        raise TemplateError(
            f"unknown stage(s) to leave out: {', '.join(unknown)}; "
            f"choose from: {', '.join(sorted(STAGES))}"
        )
    return tuple(STAGES[name] for name in dict.fromkeys(without))


# ---- reading the template ----
def source_files(root: Path = REPO_ROOT) -> list[str]:
    """Files git tracks plus new ones it does not ignore (work not yet committed), sorted;
    never the state folder, the venv, caches or ``.git``."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise TemplateError(
            f"cannot list the template's files with git in {root}: {error}"
        ) from error
    # A file deleted in the working tree is still listed until the deletion is committed.
    return sorted(p for p in set(listed.split("\0")) if p and (root / p).is_file())


def stage_files(stage: Stage, files: list[str]) -> set[str]:
    return {f for f in files if any(fnmatch.fnmatch(f, pattern) for pattern in stage.paths)}


# ---- transformations: pure functions of text ----
def rename(text: str, name: str) -> str:
    """Every ``ranklab`` becomes ``name`` in the same case (lower, UPPER or Capitalised)."""

    def same_case(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.isupper():
            return name.upper()
        if word[0].isupper():
            return name.capitalize()
        return name

    return re.sub(TEMPLATE_NAME, same_case, text, flags=re.IGNORECASE)


def rename_path(path: str, name: str) -> str:
    parts = path.split("/")
    return "/".join(name if part == TEMPLATE_NAME else part for part in parts)


def drop_cli_commands(source: str, commands: set[str], packages: set[str] = frozenset()) -> str:
    """Remove the CLI commands named in ``commands``: ``@app.command(...)`` functions, and
    command groups (``app.add_typer(group, name=...)``: the call, the group and its commands);
    then the module's helper functions that import one of ``packages`` and that nothing kept
    calls, the comments just above everything removed, and the imports left unused."""
    tree = ast.parse(source)
    groups = {
        group: node
        for node in tree.body
        if (group := _added_group(node)) and _group_name(node) in commands
    }
    dropped: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            owner, name = _command_of(node)
            if (owner == "app" and name in commands) or owner in groups:
                dropped.append(node)
        elif node in groups.values() or _assigns_one_of(node, groups):
            dropped.append(node)
    kept_names = _names_used([n for n in tree.body if n not in dropped])
    dropped += [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and node not in dropped
        and node.name not in kept_names
        and any(_is_in(m, packages) for m in imports_of_node(node))
    ]
    lines = source.splitlines(keepends=True)
    for start, end in sorted((_span(node, lines) for node in dropped), reverse=True):
        while end < len(lines) and not lines[end].strip():  # the blank lines after it
            end += 1
        del lines[start:end]
    return _drop_unused_imports("".join(lines)) if dropped else source


def _span(node: ast.stmt, lines: list[str]) -> tuple[int, int]:
    """0-based line range of ``node`` with its decorators and the comment lines above it."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start, node.end_lineno or node.lineno


def _names_used(nodes: list[ast.stmt]) -> set[str]:
    used: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        used.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    return used


def _drop_unused_imports(source: str) -> str:
    """Remove top-level imports that nothing in ``source`` uses any more."""
    tree = ast.parse(source)
    used = _names_used(tree.body)
    lines = source.splitlines(keepends=True)
    for node in reversed(tree.body):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        kept = [a for a in node.names if (a.asname or a.name).split(".")[0] in used]
        if len(kept) == len(node.names):
            continue
        replacement = []
        if kept:
            node.names = kept
            replacement = [ast.unparse(node) + "\n"]
        lines[node.lineno - 1 : node.end_lineno] = replacement
    return "".join(lines)


def _is_in(module: str, packages: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _command_of(node: ast.FunctionDef) -> tuple[str | None, str | None]:
    """(the Typer object, the command name) of a function decorated ``@<typer>.command``."""
    for decorator in node.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        func = call.func if call else decorator
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "command"
            and isinstance(func.value, ast.Name)
        ):
            if call and call.args and isinstance(call.args[0], ast.Constant):
                return func.value.id, str(call.args[0].value)
            return func.value.id, node.name.replace("_", "-")
    return None, None


def _added_group(node: ast.stmt) -> str | None:
    """``group`` in a statement ``app.add_typer(group, ...)``."""
    if (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == "add_typer"
        and node.value.args
        and isinstance(node.value.args[0], ast.Name)
    ):
        return node.value.args[0].id
    return None


def _group_name(node: ast.stmt) -> str | None:
    assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    for keyword_ in node.value.keywords:
        if keyword_.arg == "name" and isinstance(keyword_.value, ast.Constant):
            return str(keyword_.value.value)
    return None


def _assigns_one_of(node: ast.stmt, names: dict[str, ast.stmt]) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id in names for target in node.targets
    )


def drop_make_targets(makefile: str, targets: set[str]) -> str:
    """Remove the rules for ``targets`` (the rule line, its recipe and the comments above it)
    and their names from ``.PHONY``."""
    out: list[str] = []
    skipping = False
    for line in makefile.splitlines(keepends=True):
        rule = re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line)
        if rule and rule.group(1) in targets:
            while out and out[-1].startswith("#"):  # the rule's own comment
                out.pop()
            skipping = True
            continue
        if skipping and (line.startswith("\t") or not line.strip()):
            continue
        skipping = False
        if line.startswith(".PHONY:"):
            kept = [t for t in line.split(":", 1)[1].split() if t not in targets]
            line = ".PHONY: " + " ".join(kept) + "\n"
        out.append(line)
    return "".join(out)


def drop_doc_rows(markdown: str, mentions: list[str]) -> str:
    """Remove table rows that mention something left out (a path or a make target)."""
    return "".join(
        line
        for line in markdown.splitlines(keepends=True)
        if not (line.lstrip().startswith("|") and any(m in line for m in mentions))
    )


def imports_of(source: str) -> set[str]:
    try:
        return imports_of_node(ast.parse(source))
    except SyntaxError:
        return set()


def imports_of_node(tree: ast.AST) -> set[str]:
    """Every absolute module imported anywhere inside ``tree``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


# ---- the plan: the new project's files in memory ----
def plan_project(name: str, stages: tuple[Stage, ...], root: Path = REPO_ROOT) -> dict[str, bytes]:
    """Path -> content of every file of the new project. Raises ``TemplateError`` when a
    stage cannot be left out cleanly."""
    files = source_files(root)
    dropped: set[str] = set()
    for stage in stages:
        owned = stage_files(stage, files)
        if not owned:
            raise TemplateError(
                f"stage {stage.name!r} has no files in {root}: nothing to leave out"
            )
        dropped |= owned
    kept = [f for f in files if f not in dropped]
    commands = {c for s in stages for c in s.cli_commands}
    targets = {t for s in stages for t in s.make_targets}
    mentions = sorted(
        {f"{s.package.replace('.', '/')}/" for s in stages}
        | {f"make {t}" for t in targets}
        | {p for p in dropped if p.endswith(".md")}
    )

    plan: dict[str, bytes] = {}
    for path in kept:
        data = (root / path).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            plan[rename_path(path, name)] = data  # binary: copied as it is
            continue
        if path in KEEP_VERBATIM:
            plan[path] = data
            continue
        if path == CLI_MODULE and commands:
            text = drop_cli_commands(text, commands, {s.package for s in stages})
        elif path == "Makefile" and targets:
            text = drop_make_targets(text, targets)
        elif path.endswith(".md") and stages:
            text = drop_doc_rows(text, mentions)
        plan[rename_path(path, name)] = rename(text, name).encode("utf-8")

    _check_no_imports_of_dropped(plan, stages)
    plan["README.md"] = _readme_with_origin(plan.get("README.md", b""), name, stages)
    return plan


def _check_no_imports_of_dropped(plan: dict[str, bytes], stages: tuple[Stage, ...]) -> None:
    for stage in stages:
        users = sorted(
            path
            for path, data in plan.items()
            if path.endswith(".py")
            and any(
                _is_in(m, {stage.package})
                for m in imports_of(data.decode("utf-8", errors="replace"))
            )
        )
        if users:
            raise TemplateError(
                f"cannot leave out {stage.name!r}: still imported by {', '.join(users)}"
            )


def _readme_with_origin(readme: bytes, name: str, stages: tuple[Stage, ...]) -> bytes:
    """The one intended mention of the template, under the README's title."""
    origin = f"Generated from {TEMPLATE_NAME} with `{TEMPLATE_NAME} new`"
    if stages:
        origin += ", without: " + ", ".join(f"{s.name} ({s.summary})" for s in stages)
    lines = readme.decode("utf-8").splitlines(keepends=True) or [f"# {name}\n"]
    return "".join([lines[0], "\n", origin + ".\n", *lines[1:]]).encode("utf-8")


# ---- writing ----
def create_project(
    target: Path, name: str, without: list[str] | None = None, git: bool = True
) -> NewProject:
    """Generate the project into ``target`` (absent or empty). All checks run first; the
    files are written to a temporary folder beside ``target`` and renamed into place last."""
    name = check_name(name)
    target = check_target(target)
    stages = check_stages(without or [])
    plan = plan_project(name, stages)

    build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for path, data in plan.items():
            destination = build / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)
            shutil.copymode(REPO_ROOT / _source_path(path, name), destination)
        _tidy(build)
        commit = _git_init(build, name) if git else None
        if target.exists():
            target.rmdir()  # empty, checked above
        os.rename(build, target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return NewProject(target, name, len(plan), tuple(s.name for s in stages), commit)


def _source_path(path: str, name: str) -> str:
    parts = path.split("/")
    return "/".join(TEMPLATE_NAME if part == name else part for part in parts)


def _tidy(folder: Path) -> None:
    """Re-sort imports and re-format: the new name sorts elsewhere among the first-party
    packages (``from shoprank...`` after ``from serving...``) and may lengthen lines, and the
    new project's ``make lint`` must pass as the template's does. Uses the ruff of the
    running environment (a dev dependency); skipped where it is not installed."""
    if importlib.util.find_spec("ruff") is None:
        return
    for args in (
        ["check", "--no-cache", "--select", "I", "--fix", "--quiet", "."],
        ["format", "--no-cache", "--quiet", "."],
    ):
        subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=folder, check=True, capture_output=True
        )


def _git_init(folder: Path, name: str) -> str:
    """A fresh repository with one commit of every generated file; returns its hash."""
    env = {
        **os.environ,
        # The commit needs an author even where git has none configured.
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", f"{name} template"),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", f"{name}@localhost"),
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", f"{name} template"),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", f"{name}@localhost"),
    }
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "--all"],
        ["commit", "--quiet", "--no-verify", "-m", f"{name}: generated from {TEMPLATE_NAME}"],
    ):
        subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=folder, check=True, capture_output=True, text=True
    ).stdout.strip()
