"""Behaviour of the PyTorch listwise ranker: it learns, it is deterministic, it debiases, it
keeps its preprocessing to the training rows, and it says what is wrong with bad input."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from models.evaluation import evaluate
from models.ranker import (
    FeatureScaler,
    ListwiseRanker,
    RankerConfig,
    approx_ndcg_loss,
    listnet_loss,
    training_targets,
)
from ranklab.schema import DEBIASED_LABEL, LABEL, SESSION_ID
from simulation.truth import TRUE_RELEVANCE

# Small enough to train in about a second on two cores.
SMALL = RankerConfig(hidden=(16,), epochs=8, patience=8, batch_sessions=32, lr=3e-3)


def fit_small(ts, config: RankerConfig = SMALL) -> ListwiseRanker:
    ranker = ListwiseRanker(ts.feature_columns, config, progress=False)
    return ranker.fit(ts.part("train"), ts.part("valid"))


def truth_ndcg(frame: pd.DataFrame, scores: np.ndarray) -> float:
    evaluation = evaluate(
        frame, scores, "m", [], seed=0, n_boot=20, extra_gains={TRUE_RELEVANCE: "skip"}
    )
    return evaluation.primary(TRUE_RELEVANCE).mean


# ---- it learns ----------------------------------------------------------------------------


def test_learns_a_planted_signal_well_above_a_shuffled_ranking(click_training_set):
    ts = click_training_set(n_sessions=600, seed=0)
    test = ts.part("test")
    ranker = fit_small(ts)
    learned = truth_ndcg(test, ranker.predict(test))
    shuffled = truth_ndcg(test, np.random.default_rng(0).random(len(test)))
    assert learned > shuffled + 0.2, (learned, shuffled)
    assert learned > 0.85


def test_records_training_curves_and_keeps_the_best_epoch(click_training_set):
    ranker = fit_small(click_training_set(n_sessions=300, seed=1))
    assert [r["epoch"] for r in ranker.history_] == list(range(1, len(ranker.history_) + 1))
    assert {"train_loss", "valid_ndcg@10"} <= set(ranker.history_[0])
    valid_curve = [r["valid_ndcg@10"] for r in ranker.history_]
    assert ranker.history_[ranker.best_epoch_ - 1]["valid_ndcg@10"] == max(valid_curve)


def test_same_seed_gives_identical_scores_and_another_seed_does_not(click_training_set):
    ts = click_training_set(n_sessions=200, seed=2)
    test = ts.part("test")
    first, again = fit_small(ts).predict(test), fit_small(ts).predict(test)
    assert np.array_equal(first, again)
    other_seed = RankerConfig(**{**SMALL.__dict__, "seed": 1})
    assert not np.allclose(first, fit_small(ts, other_seed).predict(test))


# ---- position bias ------------------------------------------------------------------------


def test_ipw_trains_on_the_debiased_label_and_naive_on_the_label():
    frame = pd.DataFrame({LABEL: [2, 0, 1, 1], DEBIASED_LABEL: [2.0, 0.0, 2.0, 20.0]})
    np.testing.assert_allclose(training_targets(frame, RankerConfig(debias="ipw")), [2, 0, 2, 20])
    np.testing.assert_allclose(training_targets(frame, RankerConfig()), [2, 0, 1, 1])


def test_ipw_ranks_closer_to_the_truth_than_naive_clicks(click_training_set):
    # The old ranker ordered slates by a feature that is mostly noise; raw clicks credit it.
    ts = click_training_set(n_sessions=600, seed=5)
    test = ts.part("test")
    config = RankerConfig(hidden=(16,), epochs=12, patience=12, lr=3e-3, session_relative=False)
    naive = fit_small(ts, config)
    ipw = fit_small(ts, RankerConfig(**{**config.__dict__, "debias": "ipw"}))
    naive_truth, ipw_truth = (
        truth_ndcg(test, naive.predict(test)),
        truth_ndcg(test, ipw.predict(test)),
    )
    assert ipw_truth > naive_truth + 0.02, (ipw_truth, naive_truth)


def test_ipw_needs_the_debiased_label(click_training_set):
    ts = click_training_set(n_sessions=100)
    ranker = ListwiseRanker(ts.feature_columns, RankerConfig(debias="ipw"), progress=False)
    with pytest.raises(KeyError, match="debias='ipw' trains on the 'label_ipw' column"):
        ranker.fit(ts.part("train").drop(columns=[DEBIASED_LABEL]))


# ---- preprocessing ------------------------------------------------------------------------


def shifted(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The same rows with wildly different feature statistics, in sessions of their own."""
    out = frame.assign(**{c: frame[c] * 100 + 50 for c in columns})
    out[SESSION_ID] = out[SESSION_ID] + 10_000
    return out


def test_preprocessing_is_fitted_on_training_rows_only(click_training_set):
    ts = click_training_set(n_sessions=200, seed=3)
    train, test = ts.part("train"), ts.part("test")
    odd_valid = shifted(ts.part("valid"), ts.feature_columns)
    ranker = ListwiseRanker(ts.feature_columns, SMALL, progress=False).fit(train, odd_valid)
    reference = FeatureScaler().fit(train[ts.feature_columns].to_numpy())
    np.testing.assert_allclose(ranker.scaler_.mean_, reference.mean_)
    np.testing.assert_allclose(ranker.scaler_.std_, reference.std_)

    # Scoring changes neither the scaler nor, through batch statistics, the scores of the
    # sessions scored beside an odd one.
    before = copy.deepcopy(ranker.scaler_)
    odd_test = shifted(test, ts.feature_columns)
    together = ranker.predict(pd.concat([test, odd_test], ignore_index=True))
    np.testing.assert_allclose(together[: len(test)], ranker.predict(test), rtol=1e-6)
    np.testing.assert_array_equal(ranker.scaler_.mean_, before.mean_)


def test_skewed_counts_are_log_transformed():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=2000), rng.poisson(np.exp(rng.normal(2, 1, 2000)))])
    scaler = FeatureScaler().fit(x)
    assert scaler.log_columns_.tolist() == [False, True]
    z = scaler.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.05)


# ---- the losses ---------------------------------------------------------------------------


def test_listnet_loss_ignores_padded_slots():
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    loss = listnet_loss(torch.tensor([[0.0, 0.0, 99.0]]), targets, mask)
    assert loss.item() == pytest.approx(np.log(2))  # two real items, equal scores


def test_approx_ndcg_loss_is_near_zero_for_a_perfect_order():
    targets = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    perfect = approx_ndcg_loss(torch.tensor([[9.0, 6.0, 3.0, 0.0]]), targets, mask)
    reversed_ = approx_ndcg_loss(torch.tensor([[0.0, 3.0, 6.0, 9.0]]), targets, mask)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)
    assert reversed_.item() > 0.4


# ---- bad input ----------------------------------------------------------------------------


def test_errors_name_what_is_wrong(click_training_set):
    ts = click_training_set(n_sessions=100)
    train = ts.part("train")
    ranker = ListwiseRanker(ts.feature_columns, SMALL, progress=False)
    with pytest.raises(RuntimeError, match="call fit before predict"):
        ranker.predict(train)
    with pytest.raises(KeyError, match=r"lacks feature columns \['noise'\]"):
        ranker.fit(train.drop(columns=["noise"]))
    with pytest.raises(TypeError, match=r"must be numeric, got \['noise'\]"):
        ranker.fit(train.assign(noise="high"))
    ranker.fit(train)
    with pytest.raises(KeyError, match=r"lacks feature columns \['item_views'\]"):
        ranker.predict(train.drop(columns=["item_views"]))
