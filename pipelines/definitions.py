"""The one Dagster ``Definitions`` for ranklab: what ``dagster dev`` (``make ui``) loads and
what ``ranklab run`` executes. Assets, checks, resources, jobs and sensors each live in
``defs/``."""

from __future__ import annotations

import dagster as dg

from pipelines.defs import data_assets, feature_assets, model_assets, monitoring_assets
from pipelines.defs.jobs import JOBS
from pipelines.defs.resources import build_resources
from pipelines.defs.retention import retention, retention_schedule
from pipelines.defs.sensors import SENSORS
from ranklab.settings import Settings, get_settings

STAGES = [data_assets, feature_assets, model_assets, monitoring_assets]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Everything wired to ``settings`` (default: from the environment). Tests pass a
    temporary state folder; nothing is touched until a run starts."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(STAGES),
        asset_checks=dg.load_asset_checks_from_modules(STAGES),
        jobs=[*JOBS, retention],
        schedules=[retention_schedule],
        sensors=SENSORS,
        resources=build_resources(settings or get_settings()),
    )


defs = build_definitions()
