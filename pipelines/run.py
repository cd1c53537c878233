"""Run a Dagster job in this process, against the persistent instance under the state
folder (so ``make ui`` shows the run afterwards), and print what it produced."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg

from ranklab.settings import Settings, get_settings


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance whose runs ``dagster dev`` shows: DAGSTER_HOME under the state folder."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(Path(__file__).with_name("dagster.yaml"), home / "dagster.yaml")
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home))


def run_job(
    job_name: str = "lifecycle", scale: float | None = None, settings: Settings | None = None
) -> bool:
    from pipelines.definitions import build_definitions
    from pipelines.summary import print_summary

    settings = settings or get_settings()
    if scale is not None:
        settings = settings.model_copy(
            update={"data": settings.data.model_copy(update={"scale": scale})}
        )
    defs = build_definitions(settings)
    job = defs.resolve_job_def(job_name)
    started = time.perf_counter()
    with dagster_instance(settings) as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    print_summary(result, settings, seconds=time.perf_counter() - started)
    return result.success
