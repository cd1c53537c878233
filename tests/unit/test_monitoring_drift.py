"""Drift scores and the day-to-day thresholds built on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift

from monitoring.drift import (
    CATEGORICAL_METHOD,
    NUMERIC_METHOD,
    day_to_day_drift,
    drift_score,
    log_scaled,
    on_drift_scale,
)


def _evidently_score(method: str, reference: pd.DataFrame, current: pd.DataFrame) -> float:
    numeric = method == NUMERIC_METHOD
    definition = DataDefinition(
        numerical_columns=["x"] if numeric else [], categorical_columns=[] if numeric else ["x"]
    )
    snapshot = Report([ValueDrift(column="x", method=method)]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    return float(snapshot.dict()["metrics"][0]["value"])


def test_scores_equal_evidentlys_own():
    rng = np.random.default_rng(0)
    numeric_ref = pd.DataFrame({"x": rng.lognormal(0, 1, 3000)})
    numeric_cur = pd.DataFrame({"x": rng.lognormal(0.3, 1, 800)})
    categories = np.array(["a", "b", "c", "d"])
    categorical_ref = pd.DataFrame({"x": rng.choice(categories, 3000, p=[0.4, 0.3, 0.2, 0.1])})
    categorical_cur = pd.DataFrame({"x": rng.choice(categories[:3], 800, p=[0.2, 0.3, 0.5])})

    for method, ref, cur in [
        (NUMERIC_METHOD, numeric_ref, numeric_cur),
        (CATEGORICAL_METHOD, categorical_ref, categorical_cur),
    ]:
        ours = drift_score(method, ref["x"], cur["x"])
        assert ours > 0.05
        assert ours == pytest.approx(_evidently_score(method, ref, cur), rel=1e-9)


def test_identical_samples_do_not_drift_and_an_unknown_method_is_refused():
    values = pd.Series(np.arange(100.0))
    assert drift_score(NUMERIC_METHOD, values, values) == 0.0
    with pytest.raises(ValueError, match="unsupported drift method 'psi'"):
        drift_score("psi", values, values)


def test_day_to_day_drift_is_the_largest_score_of_one_day_against_the_others():
    days = pd.Series(
        pd.to_datetime(["2026-01-01"] * 50 + ["2026-01-02"] * 50 + ["2026-01-03"] * 50)
    )
    values = np.r_[np.zeros(50), np.zeros(50), np.ones(50)]  # the third day is unlike the rest
    frame = pd.DataFrame({"x": values + np.tile(np.linspace(0, 0.1, 50), 3)})
    largest = day_to_day_drift(frame, {"x": NUMERIC_METHOD}, days)
    third = drift_score(NUMERIC_METHOD, frame["x"][:100], frame["x"][100:])
    assert largest["x"] == pytest.approx(third)
    with pytest.raises(ValueError, match="at least two days"):
        day_to_day_drift(frame, {"x": NUMERIC_METHOD}, pd.Series(days.iloc[:1].repeat(150)))


def test_non_negative_columns_are_compared_on_the_log_scale():
    frame = pd.DataFrame({"price": [1.0, 10.0, 100.0], "score": [-1.0, 0.0, 1.0]})
    assert log_scaled(frame, ["price", "score"]) == ["price"]
    scaled = on_drift_scale(frame, ["price"])
    np.testing.assert_allclose(scaled["price"], np.log1p([1.0, 10.0, 100.0]))
    np.testing.assert_array_equal(scaled["score"], frame["score"])
    # A 50% price rise is a constant shift on the log scale, whatever the price level.
    assert drift_score(NUMERIC_METHOD, np.log(frame["price"]), np.log(frame["price"] * 1.5)) == (
        pytest.approx(np.log(1.5) / np.std(np.log(frame["price"])))
    )
