"""Small synthetic training sets with a known truth, built in milliseconds (tests may read
the truth: they grade; the production code never sees these columns unless a test hands
them over).

``click_training_set`` plants a signal and logs clicks under position bias: an old ranker
orders each slate by a feature that is only loosely related to utility (``logged_score``),
and users examine position p with the real click model's curve. So raw clicks over-credit
whatever the old ranker liked, which is what inverse-propensity weighting must undo.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from ranklab.schema import (
    CLICKED,
    DEBIASED_LABEL,
    DEVICE,
    ITEM_ID,
    LABEL,
    POSITION,
    PURCHASED,
    QUERY_CATEGORY,
    REGION,
    SESSION_ID,
    SPLIT,
    USER_SEGMENT,
    TrainingSet,
)
from simulation.click_model import DEVICES, ClickModel
from simulation.truth import TRUE_RELEVANCE, TRUE_UTILITY

FEATURES = ["quality_signal", "logged_score", "noise", "item_views"]


def make_click_training_set(
    n_sessions: int = 600, slate: int = 12, seed: int = 0, signal: float = 1.5
) -> TrainingSet:
    rng = np.random.default_rng(seed)
    n = n_sessions * slate
    session = np.repeat(np.arange(n_sessions), slate)
    quality = rng.normal(size=n)
    utility = signal * quality + 0.3 * rng.normal(size=n)
    # The old ranker liked a feature that is mostly noise, a little utility.
    logged_score = 0.3 * quality + rng.normal(size=n)
    position = (
        pd.DataFrame({"s": session, "score": -logged_score})
        .groupby("s")["score"]
        .rank(method="first")
        .to_numpy()
        .astype(int)
    )
    device = np.repeat(rng.choice(DEVICES, size=n_sessions), slate)
    propensity = ClickModel().examination(position, device)
    examined = rng.random(n) < propensity
    attracted = rng.random(n) < 1 / (1 + np.exp(-(utility - 1.0)))
    clicked = (examined & attracted).astype(int)
    frame = pd.DataFrame(
        {
            SESSION_ID: session,
            ITEM_ID: rng.integers(0, 500, size=n),
            "quality_signal": quality,
            "logged_score": logged_score,
            "noise": rng.normal(size=n),
            "item_views": rng.poisson(np.exp(2 + quality)),  # a skewed count feature
            LABEL: clicked,
            # The debiased label with the true propensities (the pipeline estimates them:
            # models/debiasing.py); capped as the pipeline caps it.
            DEBIASED_LABEL: clicked * np.minimum(1.0 / propensity, 20.0),
            CLICKED: clicked,
            PURCHASED: 0,
            POSITION: position,
            TRUE_UTILITY: utility,
            TRUE_RELEVANCE: np.digitize(utility, [-1.0, 0.0, 1.0, 2.0]),
            DEVICE: device,
            REGION: np.repeat(rng.choice(["north", "south"], size=n_sessions), slate),
            USER_SEGMENT: np.repeat(rng.choice(["new", "returning"], size=n_sessions), slate),
            QUERY_CATEGORY: np.repeat(rng.choice(["books", "toys"], size=n_sessions), slate),
        }
    )
    # Sessions in time order: the first 60% train, then valid, then test.
    frame[SPLIT] = np.select(
        [session < 0.6 * n_sessions, session < 0.8 * n_sessions], ["train", "valid"], "test"
    )
    return TrainingSet(frame=frame, feature_columns=list(FEATURES), source="generated")


@pytest.fixture
def click_training_set() -> Callable[..., TrainingSet]:
    """A factory: ``click_training_set(n_sessions=..., seed=...)``."""
    return make_click_training_set
