"""The training set: a row per logged impression, its features from Feast's point-in-time join.

Each impression becomes an entity row (user, item, the item's category, the session's time and
the request's query category); Feast joins the ``ranker_v1`` feature service as of that time,
the same service serving reads online. Labels come from the clicks, ground truth and slice
columns ride along for evaluation, and the rows are split by day: train, then valid, then test.

Model inputs (``feature_columns``) are exactly the numeric features of the feature service, so
serving can rebuild them from ``features.store.online_features``. The logged position is kept
but is not a model input (it is unknown when ranking). Categorical context (device, region,
query category) is not one-hot encoded: the query enters through the on-demand feature
query_matches_category, and device and region stay slice columns only.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
from feast import FeatureStore

from features import aggregates
from features.feature_repo.feature_services import RANKER_V1
from features.store import FEATURE_DEFAULTS, feature_names, fill_defaults
from ranklab import schema
from ranklab.io import write_json, write_parquet
from ranklab.schema import TrainingSet
from ranklab.settings import Settings, SplitSettings

# A user is "new" in a session that starts less than this many days after their signup: as
# long as the 28-day user features cannot yet hold a full window of their history.
NEW_USER_DAYS = aggregates.LONG_WINDOW_DAYS

WARMUP = "warmup"
FRAME_FILE = "training_set.parquet"
METADATA_FILE = "training_set.json"
_ROW_ID = "_row_id"


def build_training_set(
    settings: Settings,
    tables: Mapping[str, pd.DataFrame],
    store: FeatureStore,
    service: str = RANKER_V1,
) -> TrainingSet:
    """Impressions with labels, Feast features, slices and a time split (warmup days dropped).

    ``store`` must hold the applied definitions over the feature tables of these ``tables``.
    """
    aggregates.check_raw_tables(tables)
    rows = impression_rows(tables)
    rows[schema.SPLIT] = assign_splits(rows[schema.EVENT_TIMESTAMP], settings.split)
    warmup = rows[schema.SPLIT] == WARMUP
    rows = rows[~warmup].reset_index(drop=True)

    feature_service = store.get_feature_service(service)
    feature_columns = feature_names(feature_service)
    started = time.perf_counter()
    features = historical_features(store, rows, service)
    retrieval_seconds = time.perf_counter() - started

    frame = pd.concat([rows, features[feature_columns]], axis=1)
    missing = frame[feature_columns].isna().sum()
    if missing.any():
        raise ValueError(f"features still missing after defaults: {missing[missing > 0].to_dict()}")
    metadata = {
        "feature_service": service,
        "feature_views": [p.name for p in feature_service.feature_view_projections],
        "feature_defaults": {c: FEATURE_DEFAULTS[c] for c in feature_columns},
        "offline_store": store.config.offline_store.type,
        "retrieval_seconds": round(retrieval_seconds, 2),
        "data_hash": data_hash(tables),
        "new_user_days": NEW_USER_DAYS,
        "warmup_rows_dropped": int(warmup.sum()),
        "splits": split_summary(frame),
    }
    return TrainingSet(
        frame=frame, feature_columns=feature_columns, source="generated", metadata=metadata
    )


# ---- the rows ----
def impression_rows(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """A row per impression: keys, request context, labels, ground truth and the user segment,
    ordered by session time so the rows of a session are contiguous."""
    sessions = tables["sessions"].rename(columns={"ts": schema.EVENT_TIMESTAMP})
    sessions[schema.EVENT_TIMESTAMP] = pd.to_datetime(sessions[schema.EVENT_TIMESTAMP], utc=True)
    items = tables["items"][[schema.ITEM_ID, "category"]].rename(
        columns={"category": schema.ITEM_CATEGORY}
    )
    rows = (
        tables["impressions"]
        .merge(sessions, on=schema.SESSION_ID, validate="many_to_one")
        .merge(items, on=schema.ITEM_ID, validate="many_to_one")
        .merge(_labels(tables["clicks"]), on=[schema.SESSION_ID, schema.ITEM_ID], how="left")
    )
    for column in (schema.CLICKED, schema.PURCHASED, schema.LABEL):
        rows[column] = rows[column].fillna(0).astype("int64")
    rows[schema.USER_SEGMENT] = _user_segment(rows, tables["users"])
    rows = rows.sort_values(
        [schema.EVENT_TIMESTAMP, schema.SESSION_ID, schema.POSITION], kind="stable"
    )
    columns = [
        schema.SESSION_ID,
        schema.USER_ID,
        schema.ITEM_ID,
        schema.ITEM_CATEGORY,
        schema.EVENT_TIMESTAMP,
        schema.QUERY_CATEGORY,
        schema.DEVICE,
        schema.REGION,
        schema.USER_SEGMENT,
        schema.POSITION,
        schema.RANDOMIZED,
        schema.CLICKED,
        schema.PURCHASED,
        schema.LABEL,
    ]
    return rows[columns].reset_index(drop=True)


def _labels(clicks: pd.DataFrame) -> pd.DataFrame:
    """Per clicked (session, item): clicked 1, purchased 0/1, graded label 1 click, 2 purchase."""
    labels = clicks.groupby([schema.SESSION_ID, schema.ITEM_ID], as_index=False).agg(
        **{schema.PURCHASED: ("purchased", "max")}
    )
    labels[schema.PURCHASED] = labels[schema.PURCHASED].astype("int64")
    labels[schema.CLICKED] = 1
    labels[schema.LABEL] = labels[schema.CLICKED] + labels[schema.PURCHASED]
    return labels


def _user_segment(rows: pd.DataFrame, users: pd.DataFrame) -> np.ndarray:
    signup = rows[schema.USER_ID].map(users.set_index(schema.USER_ID)["signup_ts"])
    tenure = rows[schema.EVENT_TIMESTAMP] - pd.to_datetime(signup, utc=True)
    return np.where(tenure < pd.Timedelta(days=NEW_USER_DAYS), "new", "returning")


# ---- the split ----
def assign_splits(timestamps: pd.Series, split: SplitSettings) -> np.ndarray:
    """The split of each row, by day: the last ``test_days`` are "test", the ``valid_days``
    before them "valid", the rest "train", except the first ``warmup_days``: WARMUP (dropped,
    their trailing-window features are still filling up)."""
    day = (timestamps.dt.floor("D") - timestamps.min().floor("D")).dt.days.to_numpy()
    n_days = int(day.max()) + 1
    valid_start = n_days - split.test_days - split.valid_days
    if valid_start <= split.warmup_days:
        raise ValueError(
            f"split leaves no training days: {n_days} days of sessions, but warmup "
            f"{split.warmup_days} + valid {split.valid_days} + test {split.test_days} days"
        )
    return np.select(
        [day < split.warmup_days, day < valid_start, day < n_days - split.test_days],
        [WARMUP, "train", "valid"],
        default="test",
    )


def split_summary(frame: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Per split: first and last day, rows, sessions and clicks."""
    summary: dict[str, dict[str, object]] = {}
    for name in schema.SPLITS:
        part = frame[frame[schema.SPLIT] == name]
        days = part[schema.EVENT_TIMESTAMP].dt.floor("D")
        summary[name] = {
            "first_day": days.min().date().isoformat() if len(part) else None,
            "last_day": days.max().date().isoformat() if len(part) else None,
            "rows": len(part),
            "sessions": int(part[schema.SESSION_ID].nunique()),
            "clicks": int(part[schema.CLICKED].sum()),
        }
    return summary


# ---- Feast ----
def historical_features(
    store: FeatureStore, rows: pd.DataFrame, service: str = RANKER_V1
) -> pd.DataFrame:
    """The service's features for each row as of its timestamp, defaults filled, in row order.

    Only the keys, the timestamp and the request column go to Feast; the rest joins back
    by position, which keeps the offline store's work (and memory) small.
    """
    request = rows[
        [schema.USER_ID, schema.ITEM_ID, schema.ITEM_CATEGORY, schema.QUERY_CATEGORY]
    ].copy()
    request[_ROW_ID] = np.arange(len(rows))
    request[schema.EVENT_TIMESTAMP] = _unique_timestamps(rows[schema.EVENT_TIMESTAMP])
    joined = store.get_historical_features(
        entity_df=request, features=store.get_feature_service(service)
    ).to_df()
    if len(joined) != len(rows) or not joined[_ROW_ID].is_unique:
        raise RuntimeError(
            f"Feast returned {len(joined)} rows for {len(rows)} entity rows; the offline store "
            "dropped or duplicated some (is every entity's feature table row present daily?)"
        )
    return fill_defaults(joined.set_index(_ROW_ID).sort_index().reset_index(drop=True))


def _unique_timestamps(timestamps: pd.Series) -> pd.Series:
    """Shift rows that share a timestamp apart by whole microseconds.

    Feast's file offline store keeps one row per (join keys, event_timestamp) and silently drops
    the others (feast-dev/feast#6787): two sessions logged in the same second that show the
    same item would lose one. The shift (at most the rows sharing a second, in microseconds)
    stays far below the one-second resolution of the logs and the feature rows, so it never
    changes which feature row is joined.
    """
    shift = timestamps.groupby(timestamps).cumcount()
    return timestamps + pd.to_timedelta(shift, unit="us")


# ---- lineage ----
def data_hash(tables: Mapping[str, pd.DataFrame]) -> str:
    """sha256 over the raw tables' names, columns and values: equal hashes, equal data."""
    digest = hashlib.sha256()
    for name in schema.RAW_TABLES:
        table = tables[name]
        digest.update(name.encode())
        digest.update(json.dumps(list(map(str, table.columns))).encode())
        digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


# ---- storage ----
def save_training_set(training_set: TrainingSet, settings: Settings) -> dict[str, str]:
    """The frame as parquet and everything else as JSON, under ``settings.training_dir``."""
    frame_path = write_parquet(training_set.frame, settings.training_dir / FRAME_FILE)
    document = {
        "source": training_set.source,
        "feature_columns": training_set.feature_columns,
        "metadata": training_set.metadata,
    }
    metadata_path = write_json(document, settings.training_dir / METADATA_FILE)
    return {"frame": str(frame_path), "metadata": str(metadata_path)}


def load_training_set(settings: Settings) -> TrainingSet:
    """The training set ``save_training_set`` wrote."""
    frame_path = settings.training_dir / FRAME_FILE
    metadata_path = settings.training_dir / METADATA_FILE
    for path in (frame_path, metadata_path):
        if not path.exists():
            raise FileNotFoundError(f"no training set at {path}: build and save it first")
    document = json.loads(metadata_path.read_text(encoding="utf-8"))
    return TrainingSet(
        frame=pd.read_parquet(frame_path),
        feature_columns=list(document["feature_columns"]),
        source=document["source"],
        metadata=document["metadata"],
    )
