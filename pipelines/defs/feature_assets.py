"""Stage 2, features: point-in-time feature tables, the Feast store, the training set,
and the online store that serving reads. Each asset calls plain code in ``features/``."""

import dagster as dg
import pandas as pd

from features import aggregates, store, training_set
from pipelines.defs.resources import FeatureStoreResource, SettingsResource
from ranklab.schema import TrainingSet


@dg.asset(group_name="features", kinds={"pandas", "parquet"})
def feature_tables(
    context: dg.AssetExecutionContext,
    validated_events: dict[str, pd.DataFrame],
    settings: SettingsResource,
) -> None:
    """Daily snapshots of trailing-window aggregates, each computed strictly from events
    before its timestamp; the parquet files Feast's offline store reads."""
    tables = aggregates.compute_feature_tables(validated_events)
    paths = aggregates.write_feature_tables(tables, settings.get())
    context.add_output_metadata(
        {f"rows.{name}": len(frame) for name, frame in tables.items()}
        | {f"path.{name}": dg.MetadataValue.path(str(path)) for name, path in paths.items()}
    )


@dg.asset(group_name="features", deps=[feature_tables], kinds={"feast"})
def feature_registry(context: dg.AssetExecutionContext, settings: SettingsResource) -> None:
    """Entities, feature views, the on-demand view and feature services applied to Feast."""
    feast_store = store.apply_definitions(settings.get())
    views = sorted(v.name for v in feast_store.list_feature_views())
    services = sorted(s.name for s in feast_store.list_feature_services())
    context.add_output_metadata(
        {
            "feature_views": views,
            "feature_services": services,
            "headline": f"views {', '.join(views)}; services {', '.join(services)}",
        }
    )


@dg.asset(group_name="features", deps=[feature_registry], kinds={"feast", "pandas"})
def training_data(
    context: dg.AssetExecutionContext,
    validated_events: dict[str, pd.DataFrame],
    settings: SettingsResource,
    feature_store: FeatureStoreResource,
) -> TrainingSet:
    """One row per shown item with point-in-time features (Feast get_historical_features),
    labels and the ground truth, split by time into train / valid / test."""
    cfg = settings.get()
    ts = training_set.build_training_set(cfg, validated_events, feature_store.store())
    paths = training_set.save_training_set(ts, cfg)
    context.add_output_metadata(split_metadata(ts) | {"paths": paths})
    return ts


@dg.asset(group_name="features", deps=[feature_registry], kinds={"feast", "sqlite"})
def online_features(
    context: dg.AssetExecutionContext,
    validated_events: dict[str, pd.DataFrame],
    feature_store: FeatureStoreResource,
) -> None:
    """The online store filled with the newest snapshot of every feature view (materialize)."""
    end = aggregates.snapshot_days(validated_events).max().to_pydatetime()
    store.materialize(feature_store.store(), end=end)
    context.add_output_metadata(
        {"materialized_until": end.isoformat(), "headline": f"online until {end.isoformat()}"}
    )


def split_metadata(ts: TrainingSet) -> dict[str, object]:
    """Shape and split dates, flat, for the Dagster UI and the run summary."""
    meta: dict[str, object] = {
        "rows": len(ts.frame),
        "features": len(ts.feature_columns),
        "feature_columns": ts.feature_columns,
        "retrieval_seconds": ts.metadata.get("retrieval_seconds"),
    }
    for split, summary in ts.metadata["splits"].items():
        meta[f"{split}.sessions"] = summary["sessions"]
        meta[f"{split}.rows"] = summary["rows"]
        meta[f"{split}.days"] = f"{summary['first_day']} .. {summary['last_day']}"
    return meta
