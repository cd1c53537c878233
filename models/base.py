"""The one contract every model follows, baseline or neural (scikit-learn conventions).

``__init__`` stores hyperparameters only; ``fit`` learns from the training frame and
returns ``self``; learned state ends in ``_``; ``predict`` returns one score per row
(higher means shown earlier). Frames are ``TrainingSet`` rows: the feature columns plus
``session_id`` and, for fitting, ``label`` (and ``position`` where a model debiases).
"""

from __future__ import annotations

from typing import Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd


@runtime_checkable
class Ranker(Protocol):
    name: str
    feature_columns: list[str]

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> Self: ...

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


def missing_features(frame: pd.DataFrame, feature_columns: list[str]) -> list[str]:
    return [c for c in feature_columns if c not in frame.columns]


def require_features(frame: pd.DataFrame, feature_columns: list[str], who: str) -> None:
    """Fail with a message naming the absent columns, before any scoring work."""
    missing = missing_features(frame, feature_columns)
    if missing:
        raise KeyError(f"{who}: input frame lacks feature columns {missing}")
