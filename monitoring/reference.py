"""The monitoring reference: what "normal" looked like for one served model at training time.

Windows of served traffic are compared with it:

- ``candidates``: every training-set row shaped like a served candidate row (context,
  features, the model's score): the reference for feature drift, score drift and data
  quality (ranges, categories, spread). ``meta["day_to_day_drift"]`` holds how far each
  column moves between ordinary training days, the base of its drift threshold
  (``monitoring/drift.py``).
- ``replayed``: the ranking quality the model should reach on the test days *when it does
  the ranking* (``sessions`` holds it per search). The logged clicks were produced under the
  old logging policy's order, so offline NDCG is not what serving measures; instead each
  test session is replayed from the logs alone: the model orders the candidates, and a
  click model the system learned from its own logs (the estimated examination curve and a
  regression of attraction on the features, ``monitoring/replay.py``) clicks on that order.

A reference belongs to one model version: when a new champion is promoted, build its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.events import REQUEST_ID
from models.debiasing import CURVE_METADATA
from models.propensity import PropensityCurve
from models.scorers import Scorer
from monitoring.drift import column_methods, day_to_day_drift, log_scaled, on_drift_scale
from monitoring.replay import LearnedClickModel, replay
from monitoring.windows import (
    CONTEXT_COLUMNS,
    MODEL_VERSION,
    SCORE,
    SERVED_BY,
    SERVED_BY_MODEL,
    session_quality,
)
from ranklab import schema
from ranklab.io import write_json, write_parquet
from ranklab.schema import TrainingSet
from ranklab.settings import Settings

# The last two weeks of training: recent enough that calendar features and the 28-day
# trailing windows look like serving's (the first weeks of the log fill those windows up),
# long enough to see how much an ordinary day varies.
REFERENCE_DAYS = 14


@dataclass
class MonitoringReference:
    model_version: str
    feature_columns: list[str]
    candidates: pd.DataFrame  # a row per test-day impression: features, context, score
    replayed: pd.DataFrame  # the same rows shown in the model's order: position, label, context
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def sessions(self) -> pd.DataFrame:
        """Per replayed search: hit_rate@10, mrr, ndcg@10 and the context."""
        return session_quality(self.replayed)

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        write_parquet(self.candidates, directory / "candidates.parquet")
        write_parquet(self.replayed, directory / "replayed.parquet")
        document = {
            "model_version": self.model_version,
            "feature_columns": self.feature_columns,
            "meta": self.meta,
        }
        write_json(document, directory / "reference.json")
        return directory

    @classmethod
    def load(cls, directory: Path) -> MonitoringReference:
        directory = Path(directory)
        path = directory / "reference.json"
        if not path.exists():
            raise FileNotFoundError(
                f"no monitoring reference at {directory}: build it when the model is promoted"
            )
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            model_version=document["model_version"],
            feature_columns=list(document["feature_columns"]),
            candidates=pd.read_parquet(directory / "candidates.parquet"),
            replayed=pd.read_parquet(directory / "replayed.parquet"),
            meta=document["meta"],
        )


def reference_dir(settings: Settings, model_version: str) -> Path:
    return settings.root / "monitoring" / "reference" / f"v{model_version}"


def build_reference(
    training_set: TrainingSet,
    model: Scorer,
    model_version: str,
    seed: int = 0,
    days: int = REFERENCE_DAYS,
) -> MonitoringReference:
    """The reference of ``model``: the training set's last ``days`` days as served candidate
    rows, the day-to-day drift of each column, and the replayed test days (module docstring).
    ``training_set`` carries the estimated examination curve in its metadata
    (``models.debiasing.with_debiased_label``)."""
    if CURVE_METADATA not in training_set.metadata:
        raise ValueError(
            "build_reference replays the test days with the estimated examination curve; "
            "this training set has none (estimate it with models.debiasing first)"
        )
    curve = PropensityCurve.from_dict(training_set.metadata[CURVE_METADATA])
    train = training_set.part("train")
    clicks = LearnedClickModel.fit(train, training_set.feature_columns, curve, seed=seed)
    rows = served_like(training_set, model, model_version)
    test = rows[training_set.frame[schema.SPLIT].to_numpy() == "test"]
    day = rows[schema.EVENT_TIMESTAMP].dt.floor("D")
    rows = rows[day > day.max() - pd.Timedelta(days=days)].reset_index(drop=True)
    if test.empty:
        raise ValueError("training set has no test rows to replay for the ranking reference")
    shown = replay(test, clicks, np.random.default_rng(seed))
    numerical = [*training_set.feature_columns, SCORE]
    methods = column_methods(numerical, CONTEXT_COLUMNS)
    log_columns = log_scaled(rows, numerical)
    return MonitoringReference(
        model_version=model_version,
        feature_columns=list(training_set.feature_columns),
        candidates=rows.drop(columns=list(_LOGGED_COLUMNS)),
        replayed=shown[[*_REPLAYED_COLUMNS, *CONTEXT_COLUMNS]],
        meta={
            "first_day": str(rows[schema.EVENT_TIMESTAMP].min().date()),
            "last_day": str(rows[schema.EVENT_TIMESTAMP].max().date()),
            "days": int(rows[schema.EVENT_TIMESTAMP].dt.floor("D").nunique()),
            "rows": len(rows),
            "replayed_searches": int(test[REQUEST_ID].nunique()),
            "seed": seed,
            "log_scaled": log_columns,
            "day_to_day_drift": day_to_day_drift(
                on_drift_scale(rows, log_columns), methods, rows[schema.EVENT_TIMESTAMP]
            ),
        },
    )


def served_like(training_set: TrainingSet, model: Scorer, model_version: str) -> pd.DataFrame:
    """The training set's rows shaped like served candidate rows: a request per session,
    its context, the features, the model's score and version (plus what was logged: the
    position and the labels, for the replay)."""
    frame = training_set.frame
    scores = model.predict(frame[[schema.SESSION_ID, *training_set.feature_columns]])
    columns = [
        schema.SESSION_ID,
        schema.EVENT_TIMESTAMP,
        schema.ITEM_ID,
        *CONTEXT_COLUMNS,
        *training_set.feature_columns,
        *_LOGGED_COLUMNS,
    ]
    rows = frame[columns].rename(columns={schema.SESSION_ID: REQUEST_ID}).reset_index(drop=True)
    rows[REQUEST_ID] = rows[REQUEST_ID].astype(str)
    rows[SCORE] = np.asarray(scores, dtype=float)
    rows[SERVED_BY] = SERVED_BY_MODEL
    rows[MODEL_VERSION] = str(model_version)
    return rows


_LOGGED_COLUMNS = (schema.POSITION, schema.CLICKED, schema.PURCHASED)
_REPLAYED_COLUMNS = (
    REQUEST_ID,
    schema.ITEM_ID,
    schema.POSITION,
    schema.CLICKED,
    schema.PURCHASED,
    schema.LABEL,
)
