"""The runtime's pieces that need no store or registry: the model check and the poller."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from serving.champion import IncompatibleModelError, InvalidScoresError, LoadedModel
from serving.runtime import Poller, check_model


class Scores:
    """A pyfunc stand-in returning fixed scores (NaN to play a broken model)."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.seen: pd.DataFrame | None = None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.seen = frame
        return np.full(len(frame), self.value)


def loaded(pyfunc: Scores, columns=("item_ctr_28d", "user_ctr_28d")) -> LoadedModel:
    return LoadedModel("ranker", "7", "registry", pyfunc, tuple(columns))  # type: ignore[arg-type]


def test_a_model_is_checked_on_default_features_with_the_session_key_first():
    pyfunc = Scores(0.5)
    check_model(loaded(pyfunc), served_columns=["item_ctr_28d", "user_ctr_28d", "item_age_days"])
    assert list(pyfunc.seen.columns) == ["session_id", "item_ctr_28d", "user_ctr_28d"]
    assert (pyfunc.seen["session_id"] == 0).all()


def test_a_model_needing_unserved_features_is_refused():
    with pytest.raises(IncompatibleModelError, match=r"does not serve: \['user_ctr_28d'\]"):
        check_model(loaded(Scores(0.5)), served_columns=["item_ctr_28d"])


def test_a_model_returning_nan_is_refused():
    with pytest.raises(InvalidScoresError, match="3 not finite"):
        check_model(loaded(Scores(np.nan)), served_columns=["item_ctr_28d", "user_ctr_28d"])


def test_the_poller_keeps_running_the_other_tasks_when_one_raises():
    ran = threading.Event()

    def broken() -> None:
        raise OSError("registry down")

    poller = Poller(0.01, [broken, ran.set]).start()
    try:
        assert ran.wait(2.0)
    finally:
        poller.stop()


def test_the_poll_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval must be > 0 seconds"):
        Poller(0, [])
