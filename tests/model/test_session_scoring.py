"""The serving fast path scores exactly what the reference path scores.

Serving scores one request (one session) with ``ListwiseRanker.predict_session`` on a matrix,
through ``RankerModel.predict_session`` and ``serving.champion.LoadedModel``; training, the
gate and evaluation use ``predict`` on a frame, through ``PyFuncModel.predict``. These tests
hold the two paths equal: bit for bit on one session, within 1e-6 against a multi-session
frame (padding changes the order of float sums).
"""

from __future__ import annotations

import pickle

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.pyfunc import (
    MODEL_CODE,
    RANKER_ARTIFACT,
    RankerModel,
    as_model_input,
    export_safe_ranker,
    load_safe_ranker,
    ranker_signature,
)
from models.ranker import ListwiseRanker, RankerConfig
from models.sklearn_baseline import PointwiseClassifier
from ranklab.schema import SESSION_ID
from serving.champion import LoadedModel, model_feature_columns

TINY = RankerConfig(hidden=(16, 8), epochs=3, patience=3, batch_sessions=32, lr=3e-3)


@pytest.fixture(params=[True, False], ids=["session-relative", "plain"])
def fitted(request, click_training_set):
    ts = click_training_set(n_sessions=200, seed=3)
    config = RankerConfig(**{**TINY.__dict__, "session_relative": request.param})
    ranker = ListwiseRanker(ts.feature_columns, config, progress=False)
    return ranker.fit(ts.part("train"), ts.part("valid")), ts.part("test")


def sessions(frame: pd.DataFrame, limit: int = 20):
    for _, session in list(frame.groupby(SESSION_ID, sort=False))[:limit]:
        yield session.reset_index(drop=True)


def test_one_session_scores_bit_for_bit_like_predict(fitted):
    ranker, test = fitted
    for session in sessions(test):
        matrix = session[ranker.feature_columns].to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(ranker.predict_session(matrix), ranker.predict(session))


def test_one_session_matches_a_multi_session_frame_to_1e6(fitted):
    ranker, test = fitted
    whole = ranker.predict(test)
    for session in sessions(test):
        rows = np.flatnonzero(test[SESSION_ID].to_numpy() == session[SESSION_ID].iloc[0])
        matrix = session[ranker.feature_columns].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(ranker.predict_session(matrix), whole[rows], rtol=0, atol=1e-6)


def test_missing_values_take_the_same_path(fitted):
    ranker, test = fitted
    session = next(sessions(test)).copy()
    session.loc[::3, ranker.feature_columns[0]] = np.nan  # an unknown item: NaN features
    matrix = session[ranker.feature_columns].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(ranker.predict_session(matrix), ranker.predict(session))


def test_a_matrix_of_the_wrong_width_is_refused_with_the_expected_shape(fitted):
    ranker, _ = fitted
    with pytest.raises(ValueError, match=r"\[items, 4\] matrix .* got shape \(3, 2\)"):
        ranker.predict_session(np.zeros((3, 2)))


def test_the_pyfunc_gives_rankers_without_a_session_path_the_same_frame(click_training_set):
    ts = click_training_set(n_sessions=120, seed=4)
    pointwise = PointwiseClassifier(ts.feature_columns).fit(ts.part("train"))
    model = RankerModel.around(pointwise)
    session = next(sessions(ts.part("test")))
    expected = model.predict(None, session[model.input_columns])
    got = model.predict_session(session[pointwise.feature_columns].to_numpy(dtype=np.float64))
    np.testing.assert_array_equal(got, expected)


def test_the_served_champion_scores_like_the_mlflow_pyfunc(fitted, tmp_path):
    """Saved and loaded through MLflow as the registry does; served columns in another order."""
    ranker, test = fitted
    with open(tmp_path / "ranker.pkl", "wb") as file:
        pickle.dump(ranker, file)
    example = as_model_input(test.head(5), [SESSION_ID, *ranker.feature_columns])
    mlflow.pyfunc.save_model(
        path=tmp_path / "model",
        python_model=str(MODEL_CODE),
        artifacts={RANKER_ARTIFACT: str(tmp_path / "ranker.pkl")},
        signature=ranker_signature(ranker, example),
        input_example=example,
    )
    pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    served = LoadedModel("ranker", "1", "registry", pyfunc, model_feature_columns(pyfunc))
    for session in sessions(test, limit=5):
        reference = pyfunc.predict(as_model_input(session, [SESSION_ID, *ranker.feature_columns]))
        frame = session[list(reversed(ranker.feature_columns))]  # the reader's own order
        np.testing.assert_array_equal(served.predict(frame), np.asarray(reference, dtype=float))


def test_the_code_free_form_scores_bit_for_bit_like_the_pickled_ranker_and_unpickles_nothing(
    fitted, tmp_path, monkeypatch
):
    """Serving reads the weights (safetensors) and preprocessing (JSON), never the pickle."""
    ranker, test = fitted
    with open(tmp_path / "ranker.pkl", "wb") as file:
        pickle.dump(ranker, file)
    example = as_model_input(test.head(5), [SESSION_ID, *ranker.feature_columns])
    mlflow.pyfunc.save_model(
        path=tmp_path / "model",
        python_model=str(MODEL_CODE),  # models from code, as log_ranker stores it
        artifacts={
            RANKER_ARTIFACT: str(tmp_path / "ranker.pkl"),
            **export_safe_ranker(ranker, tmp_path),
        },
        signature=ranker_signature(ranker, example),
        input_example=example,
    )

    def refuse(*args, **kwargs):
        raise AssertionError("serving must not unpickle the artifact")

    with monkeypatch.context() as patched:
        patched.setattr(pickle, "load", refuse)
        patched.setattr(pickle, "loads", refuse)
        rebuilt = load_safe_ranker(tmp_path / "model")
    assert rebuilt is not None
    for session in sessions(test, limit=5):
        matrix = session[ranker.feature_columns].to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(
            rebuilt.predict_session(matrix), ranker.predict_session(matrix)
        )


def test_a_model_without_the_code_free_form_is_recognised(tmp_path, click_training_set):
    ts = click_training_set(n_sessions=120, seed=4)
    pointwise = PointwiseClassifier(ts.feature_columns).fit(ts.part("train"))
    with open(tmp_path / "ranker.pkl", "wb") as file:
        pickle.dump(pointwise, file)
    mlflow.pyfunc.save_model(
        path=tmp_path / "model",
        python_model=str(MODEL_CODE),
        artifacts={RANKER_ARTIFACT: str(tmp_path / "ranker.pkl")},
    )
    assert load_safe_ranker(tmp_path / "model") is None
