"""The popularity baseline: rank items by one precomputed column, nothing learned.

It is the floor every learned model must clear, and the serving fallback when the model
cannot answer, so it depends on numpy and pandas only and needs one column per item.

On the generated data the column is the item's smoothed 28-day click-through rate. Data
without such a column (LETOR) uses ``column=None``: the single feature that ranks the
training sessions best (the classic "best single feature" baseline of learning to rank).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from models.base import require_features
from models.metrics import PRIMARY_METRIC, per_session_metrics
from ranklab.schema import LABEL

DEFAULT_POPULARITY_COLUMN = "item_ctr_28d"


class PopularityRanker:
    def __init__(
        self,
        feature_columns: list[str],
        column: str | None = DEFAULT_POPULARITY_COLUMN,
        name: str = "popularity",
    ):
        self.feature_columns = feature_columns
        self.column = column
        self.name = name

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> Self:
        if self.column is not None:
            require_features(train, [self.column], self.name)
            self.column_ = self.column
        else:
            self.column_ = best_single_feature(train, self.feature_columns)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "column_"):
            raise RuntimeError(f"{self.name}: call fit before predict")
        require_features(frame, [self.column_], self.name)
        return _scores(frame[self.column_])


def _scores(values: pd.Series) -> np.ndarray:
    """The column as scores; an item without a value ranks below every item with one."""
    return np.nan_to_num(values.to_numpy(dtype=float), nan=np.finfo(float).min)


def best_single_feature(train: pd.DataFrame, feature_columns: list[str]) -> str:
    """The feature whose values alone give the best mean NDCG@10 on the training sessions."""
    require_features(train, feature_columns, "best_single_feature")
    if not feature_columns:
        raise ValueError("best_single_feature: no feature columns to choose from")
    quality = {  # sessions without a relevant item are NaN, and left out of the mean
        column: per_session_metrics(train, _scores(train[column]), LABEL)[PRIMARY_METRIC].mean()
        for column in feature_columns
    }
    return max(quality, key=quality.__getitem__)
