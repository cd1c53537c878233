"""The ``ranklab`` command: the entry points people, the Makefile and CI call.

Each command is a thin shell over code in the stage folders; run ``ranklab --help``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from ranklab.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def run(
    scale: float = typer.Option(None, help="Data scale (default: settings, 1.0)."),
    job: str = typer.Option("lifecycle", help="Dagster job to run."),
    world: bool = typer.Option(
        True,
        help="Publish the simulated marketplace to the landing folder first, and grade the "
        "run with its ground truth afterwards. --no-world runs on whatever export is in the "
        "landing folder (your own data) and grades nothing.",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Print Dagster's full event log here too."
    ),
) -> None:
    """Run the whole lifecycle as one Dagster job: a line per asset, then the summary."""
    from pipelines.run import run_job

    settings = get_settings()
    if scale is not None:
        data = settings.data.model_copy(update={"scale": scale})
        settings = settings.model_copy(update={"data": data})
    if world:
        from simulation.world import publish

        publish(settings)
    graded = world and job == "lifecycle"  # the grader prints the table, truth beside it
    ok = run_job(job, verbose=verbose, settings=settings, evaluation_table=not graded)
    if ok and graded:
        from simulation.grading import grade_run

        typer.echo(grade_run(settings).to_markdown())
    raise typer.Exit(0 if ok else 1)


@app.command("settings")
def show_settings(
    schema: bool = typer.Option(False, help="Print the JSON schema instead."),
) -> None:
    """Print the effective settings (or their JSON schema, with every field documented)."""
    settings = get_settings()
    if schema:
        typer.echo(json.dumps(settings.model_json_schema(), indent=2))
    else:
        typer.echo(settings.model_dump_json(indent=2))


@app.command("mlflow-ui")
def mlflow_ui(port: int = 5000) -> None:
    """Start the MLflow UI on 127.0.0.1 over this project's registry."""
    settings = get_settings()
    cmd = [
        sys.executable, "-m", "mlflow", "ui",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", settings.mlflow_tracking_uri,
        "--default-artifact-root", settings.mlflow_artifact_location,
    ]  # fmt: skip
    typer.echo(f"MLflow UI on http://127.0.0.1:{port}")
    os.execvp(cmd[0], cmd)


@app.command()
def serve(
    port: int = typer.Option(3001, help="Port on 127.0.0.1 (Dagster's UI keeps 3000)."),
    workers: int = typer.Option(
        None, help="Server worker processes (default: 1, as serving/service.py declares)."
    ),
) -> None:
    """Serve the champion (POST /rank) with BentoML; Ctrl-C stops it gracefully."""
    from serving.launch import exec_server

    exec_server(port=port, host="127.0.0.1", workers=workers)


@app.command()
def simulate(
    scenario: str = typer.Option("none", help="Drift scenario (see simulation/scenarios.py)."),
    days: int = typer.Option(3, min=1, help="Simulated days after the training window."),
    change_day: int = typer.Option(0, min=0, help="Day the scenario starts (0: at once)."),
) -> None:
    """Serve simulated traffic with the champion and monitor every day (a drift drill)."""
    from simulation.drill import run_drill

    result = run_drill(get_settings(), scenario, days, change_day)
    typer.echo(result.table().to_markdown(index=False))
    alerts = [a for w in result.windows for a in w.alerts]
    for alert in alerts:
        typer.echo(f"ALERT {alert.alert_id}: {alert.markdown}")
    typer.echo(f"{len(result.windows)} windows in {result.seconds:.0f} s; {len(alerts)} alerts")


@app.command("drift-demo")
def drift_demo(
    scenario: str = typer.Option("silent_degradation", help="Drift scenario, from day 0."),
    days_before: int = typer.Option(14, min=1, help="Days served before the sensor ticks."),
    days_after: int = typer.Option(4, min=1, help="Days served after retraining."),
    scale: float = typer.Option(None, help="Data scale (default: settings, 1.0)."),
    test_days: int = typer.Option(7, min=1, help="Newest days the gate judges on."),
    valid_days: int = typer.Option(
        7,
        min=1,
        help="Days before them for early stopping and the candidate's choice (the rest of the "
        "served days train). The lifecycle's default: the debiased metric needs the sessions.",
    ),
    port: int = typer.Option(3002, help="Port on 127.0.0.1 for the demo's service."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Print Dagster's full event log here too."
    ),
) -> None:
    """The monitoring loop end to end in .state/drift-demo (deleted first): pipeline, service,
    drifted traffic, monitoring partitions, sensor, retraining, gate, swap, recovery."""
    from ranklab.console import held_warnings

    with held_warnings() as early:  # the libraries' import-time warnings: to the demo's log
        from simulation.drift_demo import run_drift_demo

    base = get_settings()
    data = base.data if scale is None else base.data.model_copy(update={"scale": scale})
    split = base.split.model_copy(update={"test_days": test_days, "valid_days": valid_days})
    settings = base.model_copy(
        update={"state_dir": base.root / "drift-demo", "data": data, "split": split}
    )
    result = run_drift_demo(
        settings,
        scenario,
        days_before,
        days_after,
        port,
        echo=typer.echo,
        verbose=verbose,
        held_warnings=early,
    )
    typer.echo(result.windows.to_markdown(index=False))
    typer.echo("\n| step | seconds |\n|---|---|")
    for name, seconds in result.steps:
        typer.echo(f"| {name} | {seconds:.1f} |")
    detect = "no alert" if result.detect_hours is None else f"{result.detect_hours:.0f} h"
    mitigate = "not promoted" if result.mitigate_s is None else f"{result.mitigate_s:.0f} s"
    typer.echo(
        f"\ntime to detect (change -> retraining alert, simulated): {detect}; "
        f"time to mitigate (retrain run -> service swapped, wall): {mitigate}; "
        f"gate: v{result.retrained_version} {result.decision}"
    )


@app.command()
def rollback(reason: str = typer.Option(..., help="Why: recorded on the model version.")) -> None:
    """Point `champion` back at the previous champion (audited)."""
    from models.registry import Registry

    version = Registry(get_settings()).rollback(reason=reason)
    typer.echo(f"champion -> version {version.version}")


@app.command()
def new(
    path: str = typer.Argument(..., help="Folder for the new project (absent or empty)."),
    name: str = typer.Option(..., help="The new project's name: a snake_case package name."),
    without: str = typer.Option("", help="Stages to leave out: abtest,benchmarks."),
    git: bool = typer.Option(True, help="Initialise a git repository with one commit."),
) -> None:
    """Start a new project from this one: renamed, fresh state, no history (docs/template.md)."""
    from pathlib import Path

    from cli.template import TemplateError, create_project

    stages = [s.strip() for s in without.split(",") if s.strip()]
    try:
        project = create_project(Path(path), name, stages, git=git)
    except TemplateError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    left_out = f", without {', '.join(project.left_out)}" if project.left_out else ""
    typer.echo(f"created {project.name} in {project.path}: {project.files} files{left_out}")
    typer.echo(f"next: cd {project.path} && make setup && make test")


# ---- A/B experiments: a file the running service re-reads (serving/experiment.py) ----
experiment_app = typer.Typer(
    no_args_is_help=True,
    help="Start, stop or show the A/B experiment the service reads (no restart needed).",
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("start")
def experiment_start(
    name: str = typer.Option(None, help="The experiment's name (it salts the assignment)."),
    arm: Annotated[
        list[str] | None,
        typer.Option(help="NAME=MODEL, MODEL being alias:<alias> or version:<n>; repeat per arm."),
    ] = None,
    weights: str = typer.Option(None, help="Traffic weights in arm order, e.g. 90,10."),
    start: str = typer.Option(None, help="UTC start, ISO 8601 (default: now)."),
    end: str = typer.Option(None, help="UTC end, ISO 8601, exclusive (default: open)."),
    file: str = typer.Option(None, help="A JSON experiment config instead of the options."),
) -> None:
    """Write the experiment; the service picks it up on its next poll (~2 s)."""
    from pydantic import ValidationError

    from models.registry import Registry
    from serving.arms import resolve_arms
    from serving.experiment import (
        ExperimentConfig,
        ExperimentConfigError,
        arms_from_specs,
        describe_errors,
        experiment_path,
        load_experiment,
        save_experiment,
    )

    settings = get_settings()
    try:
        if file is not None:
            config = load_experiment(file)
            if config is None:
                raise ExperimentConfigError(f"no experiment file at {file}")
        else:
            if not name or not arm:
                raise ExperimentConfigError("give --name and at least two --arm, or --file")
            split = None if weights is None else _floats(weights, "weights")
            config = ExperimentConfig(
                name=name, arms=arms_from_specs(arm, split), start=start, end=end
            )
        versions = resolve_arms(Registry(settings), config)
    except (ExperimentConfigError, ValidationError) as error:
        why = describe_errors(error) if isinstance(error, ValidationError) else str(error)
        typer.echo(f"error: {why}", err=True)
        raise typer.Exit(2) from error
    path = save_experiment(config, experiment_path(settings.root))
    total = sum(a.weight for a in config.arms)
    for a in config.arms:
        typer.echo(f"  {a.name}: {a.model} (now v{versions[a.name]}), {a.weight / total:.1%}")
    typer.echo(f"experiment {config.name!r} written to {path}")


@experiment_app.command("stop")
def experiment_stop() -> None:
    """Disable the experiment: everyone gets the champion within a poll (~2 s)."""
    from serving.experiment import experiment_path, load_experiment, save_experiment

    path = experiment_path(get_settings().root)
    config = load_experiment(path)
    if config is None or not config.enabled:
        typer.echo("no experiment is enabled")
        return
    save_experiment(config.model_copy(update={"enabled": False}), path)
    typer.echo(f"experiment {config.name!r} stopped: everyone gets the champion")


@experiment_app.command("show")
def experiment_show(
    user: int = typer.Option(None, help="Also print this user's arm."),
) -> None:
    """Print the experiment file, whether it is running now, and optionally a user's arm."""
    from serving.experiment import assign_arm, experiment_path, load_experiment

    config = load_experiment(experiment_path(get_settings().root))
    if config is None:
        typer.echo("no experiment")
        return
    typer.echo(config.model_dump_json(indent=2))
    typer.echo(f"running now: {config.is_running()}")
    if user is not None:
        typer.echo(f"user {user}: arm {assign_arm(user, config)!r}")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError as error:
        raise typer.BadParameter(f"{what}: comma-separated numbers, got {text!r}") from error


# ---- A/B readout: power, simulated users, the readout (monitoring/abtest/) ----
abtest_app = typer.Typer(
    no_args_is_help=True, help="Size, simulate and read out A/B tests (monitoring/abtest/)."
)
app.add_typer(abtest_app, name="abtest")


@abtest_app.command("power")
def abtest_power(
    mde: float = typer.Option(0.05, help="Minimum detectable effect (relative unless --absolute)."),
    absolute: bool = typer.Option(False, help="Read --mde as an absolute difference."),
    alpha: float = typer.Option(0.05, help="Two-sided significance level."),
    power: float = typer.Option(0.8, help="Probability of detecting the MDE."),
    treatment_share: float = typer.Option(0.5, help="Share of users in the treatment."),
    metric: str = typer.Option("clicks_per_session", help="clicks_per_session or ctr."),
    from_run: str = typer.Option(None, help="A simulated experiment's control arm as baseline."),
) -> None:
    """Sessions needed to detect an effect, at the baseline's rate and variance."""
    from monitoring.abtest.commands import power as power_analysis

    result = power_analysis(
        get_settings(), mde, not absolute, alpha, power, treatment_share, metric, from_run
    )
    typer.echo(result.describe())


@abtest_app.command("register-baseline")
def abtest_register_baseline(
    model: str = typer.Option("popularity", help="popularity or pointwise."),
) -> None:
    """Register a known-weaker baseline (no alias) to serve a control arm: version:N."""
    from monitoring.abtest.commands import register_baseline

    version = register_baseline(get_settings(), model)
    typer.echo(f"{model} registered as version {version}: use --control version:{version}")


@abtest_app.command("simulate")
def abtest_simulate(
    name: str = typer.Option(..., help="The experiment's name (it salts the assignment)."),
    control: str = typer.Option("alias:champion", help="Control's model: alias:<a>, version:<n>."),
    treatment: str = typer.Option("alias:challenger", help="Treatment's model."),
    weights: str = typer.Option("50,50", help="Traffic weights, control then treatment."),
    days: int = typer.Option(3, min=1, help="Simulated days after the training window."),
    sessions_per_day: float = typer.Option(2000, min=1, help="Searches per simulated day."),
    cuped: bool = typer.Option(False, help="Decide on the CUPED-adjusted lift."),
    seed: int = typer.Option(0, help="Seed of the simulated days."),
    mlflow: bool = typer.Option(True, help="Log the report to the treatment's MLflow run."),
) -> None:
    """An A/B test on simulated users with two registry models (in process), read out."""
    from monitoring.abtest.commands import cli_errors
    from serving.experiment import Arm, ExperimentConfig
    from simulation.abtest import describe, simulate

    control_weight, treatment_weight = _floats(weights, "weights")
    with cli_errors():
        config = ExperimentConfig(
            name=name,
            arms=[
                Arm(name="control", model=control, weight=control_weight),
                Arm(name="treatment", model=treatment, weight=treatment_weight),
            ],
        )
        result = simulate(get_settings(), config, days, sessions_per_day, seed, cuped, mlflow)
    typer.echo(describe(result))


@abtest_app.command("readout")
def abtest_readout(
    name: str = typer.Option(..., help="The experiment to read out."),
    log: str = typer.Option(None, help="The service's prediction log (default: a simulation's)."),
    traffic: str = typer.Option(None, help="With --log: the traffic ledger holding the clicks."),
    metric: str = typer.Option("clicks_per_session", help="clicks_per_session or ctr."),
    cuped: bool = typer.Option(False, help="Decide on the CUPED-adjusted lift."),
    mlflow: bool = typer.Option(True, help="Log the report to the treatment's MLflow run."),
) -> None:
    """Metric per arm, lift, SRM, guardrails and the decision; markdown + HTML report."""
    from pathlib import Path

    from monitoring.abtest.commands import cli_errors, readout

    with cli_errors():
        _, files, run_id = readout(
            get_settings(),
            name,
            metric=metric,
            cuped=cuped,
            log_root=None if log is None else Path(log),
            traffic=None if traffic is None else Path(traffic),
            log_to_registry=mlflow,
        )
    typer.echo(files.markdown.read_text(encoding="utf-8"))
    typer.echo(f"report: {files.markdown} and {files.html}")
    if run_id:
        typer.echo(f"logged to MLflow run {run_id} under abtest/{name}")


@app.command()
def lab(
    number: int = typer.Argument(..., help="The lab to start (docs/workshop/labs/)."),
    force: bool = typer.Option(False, help="Discard your edits to the files labs change."),
    rebuild: bool = typer.Option(False, help="Rebuild the state checkpoint from scratch."),
    solution: bool = typer.Option(False, help="Also apply the lab's solution patch."),
) -> None:
    """Restore the state and code lab NUMBER starts from (the workshop's catch-up)."""
    from cli.labs import LabError, start_lab

    try:
        start_lab(get_settings(), number, force, rebuild, solution, echo=typer.echo)
    except LabError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error


if __name__ == "__main__":
    app()
