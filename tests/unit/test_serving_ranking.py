"""The fallback chain's decisions: which failure gives which reason, within which budget.

The collaborators here are small stand-ins that fail on purpose (a read that raises or
hangs, a model that raises or stalls); ``tests/integration/test_serving.py`` injects the
same faults into the real Feast store and MLflow models of a running server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from serving.fallback import FallbackReason
from serving.online_features import CandidateFeatures, MissingFeatureError
from serving.ranking import RankingEngine, top_k

BUDGET_S = 0.2


class Features:
    def __init__(self, fail: Exception | None = None, delay: float = 0.0) -> None:
        self.fail, self.delay = fail, delay

    def read(self, user_id, query_category, item_ids) -> CandidateFeatures:
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        frame = pd.DataFrame({"x": np.arange(len(item_ids), dtype=float)})
        return CandidateFeatures(frame=frame, cold_user=False, cold_items=[])


@dataclass
class Model:
    fail: Exception | None = None
    delay: float = 0.0
    name: str = "ranker"
    version: str = "4"

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return frame["x"].to_numpy()


@dataclass
class Champion:
    current: Model | None


class Popularity:
    name, version = "popularity", "item_stats@2026-08-29"

    def score(self, item_ids) -> np.ndarray:
        return -np.asarray(item_ids, dtype=float)


def score(features: Features, model: Model | None):
    engine = RankingEngine(features, Champion(model), Popularity(), BUDGET_S, BUDGET_S)
    try:
        started = time.monotonic()
        scored = asyncio.run(engine.score(1, "books", [5, 6, 7]))
        return scored, time.monotonic() - started
    finally:
        engine.close()


def test_the_champion_scores_when_everything_works():
    scored, _ = score(Features(), Model())
    assert (scored.served_by, scored.model_version) == ("model", "4")
    assert scored.scores.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    ("features", "model", "reason"),
    [
        (Features(), None, FallbackReason.NO_MODEL),
        (Features(fail=OSError("disk gone")), Model(), FallbackReason.ONLINE_STORE_UNAVAILABLE),
        (Features(delay=1.0), Model(), FallbackReason.ONLINE_STORE_TIMEOUT),
        (
            Features(fail=MissingFeatureError({"user_stats": ["x"]})),
            Model(),
            FallbackReason.FEATURE_MISSING,
        ),
        (Features(), Model(fail=RuntimeError("bug")), FallbackReason.MODEL_ERROR),
        (Features(), Model(delay=1.0), FallbackReason.MODEL_TIMEOUT),
    ],
    ids=lambda value: value.value if isinstance(value, FallbackReason) else "",
)
def test_each_failure_is_answered_by_popularity_with_its_reason(features, model, reason):
    scored, seconds = score(features, model)

    assert scored.served_by == f"fallback:{reason.value}"
    assert (scored.model_name, scored.model_version) == ("popularity", "item_stats@2026-08-29")
    assert scored.scores.tolist() == [-5.0, -6.0, -7.0]
    assert seconds < 2 * BUDGET_S + 0.3  # the budgets bound the wait, not the stuck call


def test_features_read_before_a_model_failure_are_kept_for_the_log():
    scored, _ = score(Features(), Model(fail=RuntimeError("bug")))
    assert scored.features is not None


def test_top_k_is_best_first_and_keeps_the_candidate_order_on_ties():
    assert top_k(np.array([0.1, 0.5, 0.5, 0.9]), 3).tolist() == [3, 1, 2]
    assert top_k(np.array([1.0, 2.0]), 5).tolist() == [1, 0]
