"""The Feast feature store: its configuration, applying the definitions, materializing, and
reading online features for serving.

Local profile: the parquet feature tables as the offline store (queried by DuckDB when
``feast[duckdb]`` is installed, else by Feast's Dask file store), SQLite as the online store,
a file registry, all under ``settings.feast_dir``. Services profile: the same, except the online
store is Redis at ``settings.feast.redis_connection`` (Feast's redis extra must be installed
to use it; the configuration itself builds without it).

The same configuration is written to ``feast_dir/feature_store.yaml`` so the Feast CLI and
``feast ui`` (``feast -c <feast_dir> ui``) see the registry this code applied.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from feast import FeatureService, FeatureStore, RepoConfig

from features import aggregates, feature_repo
from features.feature_repo.feature_services import RANKER_V1
from features.feature_repo.feature_views import SNAPSHOT_TTL, SPECS
from features.feature_repo.on_demand import ON_DEMAND
from ranklab import schema
from ranklab.io import write_text
from ranklab.settings import Settings

OfflineStore = Literal["file", "duckdb"]

# How long a FeatureStore trusts its in-memory copy of the registry. A long-lived reader (the
# serving process) sees definitions applied by another process only after this many seconds,
# or at once after ``store.refresh_registry()``.
REGISTRY_CACHE_TTL_SECONDS = 60

# Every feature's value when its row is missing (not launched, not signed up, never clicked).
FEATURE_DEFAULTS: dict[str, float | str] = {
    name: default
    for specs in (*SPECS.values(), ON_DEMAND)
    for name, (_, default, _) in specs.items()
}


# ---- configuration ----
def default_offline_store() -> OfflineStore:
    """DuckDB when its packages are installed (``feast[duckdb]``), else Feast's file store.

    Both answer get_historical_features identically here; DuckDB does it as one SQL range join,
    the file store as a Dask merge of every entity row with every row of its key (minutes and
    gigabytes at the default scale, see features/README.md).
    """
    has_duckdb = all(importlib.util.find_spec(m) is not None for m in ("duckdb", "ibis"))
    return "duckdb" if has_duckdb else "file"


def config_dict(
    settings: Settings,
    registry_cache_ttl_seconds: int = REGISTRY_CACHE_TTL_SECONDS,
    offline_store: OfflineStore | None = None,
) -> dict[str, Any]:
    """The store's configuration as plain data: what RepoConfig and feature_store.yaml both say."""
    feast_dir = settings.feast_dir
    if settings.profile == "services":
        online_store = {"type": "redis", "connection_string": settings.feast.redis_connection}
    else:
        online_store = {"type": "sqlite", "path": str(feast_dir / "online_store.db")}
    return {
        "project": settings.feast.project,
        "provider": "local",
        "registry": {
            "registry_type": "file",
            "path": str(feast_dir / "registry.db"),
            "cache_ttl_seconds": registry_cache_ttl_seconds,
        },
        "online_store": online_store,
        "offline_store": {"type": offline_store or default_offline_store()},
        "entity_key_serialization_version": 3,
    }


def repo_config(
    settings: Settings,
    registry_cache_ttl_seconds: int = REGISTRY_CACHE_TTL_SECONDS,
    offline_store: OfflineStore | None = None,
) -> RepoConfig:
    """Feast's RepoConfig from Settings. Absolute paths: nothing depends on the working dir."""
    config = config_dict(settings, registry_cache_ttl_seconds, offline_store)
    return RepoConfig(repo_path=settings.feast_dir, **config)


def write_feature_store_yaml(settings: Settings, offline_store: OfflineStore | None = None) -> Path:
    """feast_dir/feature_store.yaml, for the Feast CLI and UI over the same registry."""
    config = config_dict(settings, offline_store=offline_store)
    text = "# Written by features/store.py from ranklab Settings; edit the settings, not this.\n"
    text += yaml.safe_dump(config, sort_keys=False)
    return write_text(text, settings.feast_dir / "feature_store.yaml")


def feature_store(settings: Settings, offline_store: OfflineStore | None = None) -> FeatureStore:
    """A FeatureStore over the registry in ``settings.feast_dir`` (apply_definitions fills it)."""
    config = repo_config(settings, offline_store=offline_store)
    return FeatureStore(repo_path=str(settings.feast_dir), config=config)


def apply_definitions(
    settings: Settings, offline_store: OfflineStore | None = None
) -> FeatureStore:
    """Register every definition of ``features.feature_repo`` and create the online tables.

    The feature tables must already be written (``aggregates.write_feature_tables``): Feast
    reads their schema when it applies the views.
    """
    missing = [
        str(path)
        for path in (aggregates.feature_table_path(settings, t) for t in aggregates.FEATURE_TABLES)
        if not path.exists()
    ]
    if missing:
        raise FileNotFoundError(f"feature tables not written yet: {missing}")
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    write_feature_store_yaml(settings, offline_store)
    store = feature_store(settings, offline_store)
    store.apply(feature_repo.definitions(settings))
    return store


# ---- online ----
def materialize(store: FeatureStore, end: datetime) -> None:
    """Load the snapshot current at ``end`` into the online store.

    Every entity has a row each day (features/aggregates.py), so the window of one TTL
    before ``end`` holds the latest row of every entity: the online store then holds
    exactly what a point-in-time join at ``end`` returns offline.
    """
    if end.tzinfo is None:
        raise ValueError(f"materialize end must be timezone-aware (UTC), got naive {end}")
    end = end.astimezone(UTC)
    store.materialize(start_date=end - SNAPSHOT_TTL, end_date=end)


def online_features(
    store: FeatureStore,
    user_id: int,
    item_ids: Sequence[int],
    query_category: str,
    service: str = RANKER_V1,
) -> pd.DataFrame:
    """The feature service's features for one request: a row per candidate item, in order,
    with missing values filled by the same defaults the training set uses.

    Two lookups, because the affinity view is keyed by the candidate's category, which the
    request does not carry: first each item's category, then the whole service.
    """
    if not item_ids:
        raise ValueError("online_features needs at least one candidate item id")
    categories = store.get_online_features(
        features=[f"{aggregates.ITEM_ATTRIBUTES}:category"],
        entity_rows=[{schema.ITEM_ID: int(i)} for i in item_ids],
    ).to_df()["category"]
    entity_rows = [
        {
            schema.USER_ID: int(user_id),
            schema.ITEM_ID: int(item_id),
            schema.ITEM_CATEGORY: category if isinstance(category, str) else "",
            schema.QUERY_CATEGORY: query_category,
        }
        for item_id, category in zip(item_ids, categories, strict=True)
    ]
    response = store.get_online_features(
        features=store.get_feature_service(service), entity_rows=entity_rows
    )
    return fill_defaults(response.to_df())


# ---- shared by training and serving ----
def fill_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill missing feature values with FEATURE_DEFAULTS; numeric features become float64.

    Offline a missing row arrives as NaN, online as None: after this both read the same.
    """
    frame = frame.copy()
    for name, default in FEATURE_DEFAULTS.items():
        if name not in frame.columns:
            continue
        if isinstance(default, str):
            frame[name] = frame[name].where(frame[name].notna(), default).astype(str)
        else:
            values = pd.to_numeric(frame[name], errors="coerce").astype("float64")
            frame[name] = values.fillna(float(default))
    return frame


def model_feature_columns(store: FeatureStore, service: str = RANKER_V1) -> list[str]:
    """The model inputs a feature service provides, in the service's order (all numeric)."""
    return feature_names(store.get_feature_service(service))


def feature_names(service: FeatureService) -> list[str]:
    return [
        field.name
        for projection in service.feature_view_projections
        for field in projection.features
    ]
