"""The ``ranklab`` command: the entry points people, the Makefile and CI call.

Each command is a thin shell over code in the stage folders; run ``ranklab --help``.
"""

from __future__ import annotations

import json
import os
import sys

import typer

from ranklab.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def run(
    scale: float = typer.Option(None, help="Data scale (default: settings, 1.0)."),
    job: str = typer.Option("lifecycle", help="Dagster job to run."),
) -> None:
    """Run the whole lifecycle as one Dagster job and print its summary."""
    from pipelines.run import run_job

    overrides = {} if scale is None else {"scale": scale}
    ok = run_job(job, **overrides)
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
    workers: int = typer.Option(None, help="Server workers (default: the serving settings)."),
) -> None:
    """Serve the champion (POST /rank) with BentoML; Ctrl-C stops it gracefully."""
    from serving.launch import exec_server

    exec_server(port=port, host="127.0.0.1", workers=workers)


@app.command()
def simulate(
    scenario: str = typer.Option("none", help="Drift scenario (see monitoring/scenarios.py)."),
    days: int = typer.Option(3, min=1, help="Simulated days after the training window."),
    change_day: int = typer.Option(0, min=0, help="Day the scenario starts (0: at once)."),
) -> None:
    """Serve simulated traffic with the champion and monitor every day (a drift drill)."""
    from monitoring.drill import run_drill

    result = run_drill(get_settings(), scenario, days, change_day)
    typer.echo(result.table().to_markdown(index=False))
    alerts = [a for w in result.windows for a in w.alerts]
    for alert in alerts:
        typer.echo(f"ALERT {alert.alert_id}: {alert.markdown}")
    typer.echo(f"{len(result.windows)} windows in {result.seconds:.0f} s; {len(alerts)} alerts")


@app.command()
def rollback(reason: str = typer.Option(..., help="Why: recorded on the model version.")) -> None:
    """Point `champion` back at the previous champion (audited)."""
    from models.registry import Registry

    version = Registry(get_settings()).rollback(reason=reason)
    typer.echo(f"champion -> version {version}")


if __name__ == "__main__":
    app()
