"""The pointwise baseline: a scikit-learn classifier of "was this item clicked?".

Pointwise means every row is judged alone, ignoring the other items of its session. It is
what most teams try first, and the bar the listwise ranker has to clear. Its scores are
click probabilities, so its calibration can be checked (``models/calibration.py``).
The target is ``label > 0``: a click (or purchase) on generated data, a relevant grade on LETOR.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from models.base import require_features
from ranklab.schema import LABEL

# OpenMP threads for fitting and scoring. One, as for the PyTorch ranker: on two shared cores
# the trees' threads spin-wait on each other; a LETOR-sample fit took 101 s on 2 threads while
# other work ran, 8 s on 1.
OPENMP_THREADS = 1


class PointwiseClassifier:
    def __init__(
        self,
        feature_columns: list[str],
        max_iter: int = 200,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        seed: int = 0,
        name: str = "pointwise",
    ):
        self.feature_columns = feature_columns
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.seed = seed
        self.name = name

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> Self:
        """Fit on ``train``; ``valid`` is unused (a fixed number of boosting rounds)."""
        require_features(train, self.feature_columns + [LABEL], self.name)
        clicked = (train[LABEL].to_numpy() > 0).astype(int)
        if len(np.unique(clicked)) < 2:
            raise ValueError(
                f"{self.name}: training labels are all {clicked[0]}; need both classes"
            )
        # Gradient-boosted trees need no scaling and handle skewed counts and NaN natively.
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            early_stopping=False,
            random_state=self.seed,
        )
        with threadpool_limits(OPENMP_THREADS, user_api="openmp"):
            self.model_ = model.fit(train[self.feature_columns], clicked)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(label > 0) for each row: the ranking score is the click probability."""
        return self.predict_proba(frame)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(label > 0) for each row, one number per row (calibration reads it)."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{self.name}: call fit before predict")
        require_features(frame, self.feature_columns, self.name)
        with threadpool_limits(OPENMP_THREADS, user_api="openmp"):
            return self.model_.predict_proba(frame[self.feature_columns])[:, 1]
