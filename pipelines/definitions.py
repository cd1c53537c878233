"""The one Dagster ``Definitions`` for ranklab: what ``dagster dev`` (``make ui``) loads and
what ``ranklab run`` executes. Assets, checks, resources and jobs each live in ``defs/``."""

from __future__ import annotations

import dagster as dg

from pipelines.defs import data_assets, feature_assets, model_assets
from pipelines.defs.jobs import JOBS
from pipelines.defs.resources import build_resources
from ranklab.settings import Settings, get_settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Everything wired to ``settings`` (default: from the environment). Tests pass a
    temporary state folder; nothing is touched until a run starts."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules([data_assets, feature_assets, model_assets]),
        asset_checks=dg.load_asset_checks_from_modules([data_assets, feature_assets, model_assets]),
        jobs=JOBS,
        resources=build_resources(settings or get_settings()),
    )


defs = build_definitions()
