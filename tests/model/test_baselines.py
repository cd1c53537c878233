"""The baselines (popularity, the scikit-learn pointwise model) and the training line-up."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from features.letor import letor_training_set
from models.calibration import calibration
from models.evaluation import evaluate
from models.popularity import PopularityRanker, best_single_feature
from models.sklearn_baseline import PointwiseClassifier
from models.train import (
    BASELINE,
    POINTWISE,
    RANKER_IPW,
    RANKER_NAIVE,
    build_models,
    can_debias,
    choose_candidate,
    describe,
    train_models,
)
from ranklab.schema import DEBIASED_LABEL, LABEL, SESSION_ID
from ranklab.settings import get_settings
from simulation.truth import TRUE_RELEVANCE

LETOR_SAMPLE = get_settings().letor_dir  # ../shared beside the checkout, as in CI


def truth_ndcg(frame: pd.DataFrame, scores: np.ndarray) -> float:
    evaluation = evaluate(
        frame, scores, "m", [], seed=0, n_boot=20, extra_gains={TRUE_RELEVANCE: "skip"}
    )
    return evaluation.primary(TRUE_RELEVANCE).mean


# ---- popularity -----------------------------------------------------------------------------


def test_popularity_scores_by_its_column_and_puts_missing_values_last():
    frame = pd.DataFrame({SESSION_ID: 1, "item_ctr_28d": [0.1, np.nan, 0.3], LABEL: [0, 1, 0]})
    ranker = PopularityRanker(["item_ctr_28d"]).fit(frame)
    scores = ranker.predict(frame)
    assert scores[2] > scores[0] > scores[1]
    assert np.isfinite(scores).all()


def test_popularity_without_a_column_picks_the_best_single_feature(click_training_set):
    ts = click_training_set(n_sessions=200)
    train = ts.part("train")
    # Judged on logged clicks, the old ranker's own feature wins: position bias at work.
    assert best_single_feature(train, ts.feature_columns) == "logged_score"
    graded_by_truth = train.assign(**{LABEL: train[TRUE_RELEVANCE]})
    assert best_single_feature(graded_by_truth, ts.feature_columns) == "quality_signal"
    ranker = PopularityRanker(ts.feature_columns, column=None).fit(graded_by_truth)
    assert ranker.column_ == "quality_signal"


def test_popularity_errors_name_the_missing_column(click_training_set):
    train = click_training_set(n_sessions=50).part("train")
    with pytest.raises(KeyError, match=r"lacks feature columns \['item_ctr_28d'\]"):
        PopularityRanker(["item_ctr_28d"]).fit(train)
    with pytest.raises(RuntimeError, match="call fit before predict"):
        PopularityRanker(["noise"], column="noise").predict(train)


# ---- the pointwise scikit-learn model -------------------------------------------------------


def test_pointwise_learns_the_signal_and_outputs_calibrated_probabilities(click_training_set):
    ts = click_training_set(n_sessions=600, seed=1)
    test = ts.part("test")
    model = PointwiseClassifier(ts.feature_columns, max_iter=50).fit(ts.part("train"))
    probs = model.predict_proba(test)
    assert np.array_equal(probs, model.predict(test))
    assert ((probs >= 0) & (probs <= 1)).all()
    shuffled = truth_ndcg(test, np.random.default_rng(0).random(len(test)))
    assert truth_ndcg(test, probs) > shuffled + 0.2
    _, ece = calibration(test, probs)
    assert ece < 0.05


def test_pointwise_needs_both_classes(click_training_set):
    train = click_training_set(n_sessions=50).part("train").assign(**{LABEL: 0})
    with pytest.raises(ValueError, match="training labels are all 0"):
        PointwiseClassifier(["noise"]).fit(train)


# ---- the line-up ----------------------------------------------------------------------------


def test_train_models_fits_the_line_up_with_timings(click_training_set):
    ts = click_training_set(n_sessions=200, seed=2)
    trained = train_models(ts, seed=0, progress=False)
    assert list(trained) == [BASELINE, POINTWISE, RANKER_NAIVE, RANKER_IPW]
    assert all(t.name == name and t.fit_seconds > 0 for name, t in trained.items())
    assert trained[RANKER_IPW].model.config.debias == "ipw"
    models = {n: t.model for n, t in trained.items()}
    # The candidate is whichever ranker the debiased metric prefers on the valid days.
    assert choose_candidate(models, ts.part("valid")) in (RANKER_NAIVE, RANKER_IPW)
    test = ts.part("test")
    for t in trained.values():
        assert t.model.predict(test).shape == (len(test),)
    params = describe(trained[RANKER_IPW].model)
    assert params["model_class"] == "ListwiseRanker" and params["debias"] == "ipw"
    assert all(isinstance(v, str | int | float | bool) for v in params.values())


def test_data_without_a_debiased_label_gets_no_debiased_ranker(click_training_set):
    ts = click_training_set(n_sessions=100)
    ts.frame = ts.frame.drop(columns=[DEBIASED_LABEL])
    assert not can_debias(ts)
    trained = {n: t.model for n, t in train_models(ts, seed=0, progress=False).items()}
    assert RANKER_IPW not in trained
    assert choose_candidate(trained, ts.part("valid")) == RANKER_NAIVE


@pytest.mark.skipif(not LETOR_SAMPLE.is_dir(), reason="shared LETOR sample not present")
def test_ranker_on_the_letor_sample_beats_random_order_within_seconds():
    ts = letor_training_set(LETOR_SAMPLE / "train.txt", LETOR_SAMPLE / "test.txt")
    assert not can_debias(ts)
    ranker = build_models(ts, seed=0, progress=False)[RANKER_NAIVE]
    started = time.perf_counter()
    ranker.fit(ts.part("train"), ts.part("valid"))
    fit_seconds = time.perf_counter() - started
    test = ts.part("test")
    learned = evaluate(test, ranker.predict(test), "ranker", [], seed=0)
    shuffled = np.random.default_rng(0).random(len(test))
    random = evaluate(test, shuffled, "random", [], seed=0)
    # The published reference: random order 0.651, LightGBM LambdaMART 0.782.
    assert random.primary().mean < 0.70
    assert learned.primary().mean > 0.76
    assert fit_seconds < 60
