"""Fit every model of one experiment on the same training set, timing each fit.

The line-up, weakest to strongest in intent:
- ``popularity``: the item's smoothed CTR (or LETOR's best single feature); also the
  serving fallback and the gate's baseline.
- ``pointwise``: a scikit-learn classifier of clicks, one row at a time.
- ``ranker_naive``: the PyTorch listwise ranker trained on clicks as logged.
- ``ranker_ipw``: the same ranker trained on position-debiased clicks (``label_ipw``,
  from the system's own estimate of position bias); only where the logs allow it.

The candidate for promotion is not a fixed name: ``choose_candidate`` takes the ranker that
scores best on the validation days by the debiased offline metric (NDCG@10 on ``label_ipw``),
the same estimate the gate then judges it by on the test days. Raw clicks would reward the
ranker that copies the old ranker's order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from models.base import Ranker
from models.evaluation import decision_gain, default_no_relevant, session_metrics
from models.metrics import PRIMARY_METRIC
from models.popularity import DEFAULT_POPULARITY_COLUMN, PopularityRanker
from models.ranker import ListwiseRanker, RankerConfig
from models.sklearn_baseline import PointwiseClassifier
from ranklab.schema import DEBIASED_LABEL, Source, TrainingSet

BASELINE = "popularity"
POINTWISE = "pointwise"
RANKER_NAIVE = "ranker_naive"
RANKER_IPW = "ranker_ipw"

# One ranker, two losses (numbers in benchmarks/README.md):
# - clicks (generated): ListNet. Its loss is linear in the gains, so IPW-weighted clicks give
#   an unbiased estimate of the loss on relevance; ApproxNDCG was no better on the truth.
# - graded labels (LETOR): ApproxNDCG optimises the metric itself; ListNet overfit within
#   1-2 epochs there and scored 0.77 against 0.79 on the test queries.
RANKER_CONFIGS: dict[Source, RankerConfig] = {
    "generated": RankerConfig(loss="listnet"),
    "letor": RankerConfig(loss="approxndcg"),
}


@dataclass
class TrainedModel:
    name: str
    model: Ranker
    fit_seconds: float


def build_models(ts: TrainingSet, seed: int, progress: bool = True) -> dict[str, Ranker]:
    """The unfitted line-up for ``ts`` (see the module docstring)."""
    features = ts.feature_columns
    popularity_column = DEFAULT_POPULARITY_COLUMN if DEFAULT_POPULARITY_COLUMN in features else None
    ranker_config = dataclasses.replace(RANKER_CONFIGS[ts.source], seed=seed)
    models: dict[str, Ranker] = {
        BASELINE: PopularityRanker(features, column=popularity_column, name=BASELINE),
        POINTWISE: PointwiseClassifier(features, seed=seed, name=POINTWISE),
        RANKER_NAIVE: ListwiseRanker(features, ranker_config, name=RANKER_NAIVE, progress=progress),
    }
    if can_debias(ts):
        ipw_config = dataclasses.replace(ranker_config, debias="ipw")
        models[RANKER_IPW] = ListwiseRanker(
            features, ipw_config, name=RANKER_IPW, progress=progress
        )
    return models


def train_models(ts: TrainingSet, seed: int, progress: bool = True) -> dict[str, TrainedModel]:
    """Fit each model on the train split (rankers stop early on valid); name -> TrainedModel."""
    train, valid = ts.part("train"), ts.part("valid")
    trained = {}
    for name, model in build_models(ts, seed, progress).items():
        started = time.perf_counter()
        model.fit(train, valid if len(valid) else None)
        trained[name] = TrainedModel(name, model, time.perf_counter() - started)
    return trained


def can_debias(ts: TrainingSet) -> bool:
    """Inverse-propensity weighting needs the debiased label (``models/debiasing.py``)."""
    return DEBIASED_LABEL in ts.frame.columns


def validation_scores(models: Mapping[str, object], valid: pd.DataFrame) -> dict[str, float]:
    """Mean NDCG@10 on the valid days, on ``selection_gain``, of each ranker in ``models``."""
    gain = decision_gain(valid)
    scores = {}
    for name in (RANKER_NAIVE, RANKER_IPW):
        if name in models:
            per_session = session_metrics(
                valid, models[name].predict(valid), gain, default_no_relevant(valid)
            )
            scores[name] = float(per_session[PRIMARY_METRIC].mean())
    return scores


def choose_candidate(models: Mapping[str, object], valid: pd.DataFrame) -> str:
    """The ranker that goes to the registry and the gate: the best on the validation days by
    the debiased offline metric (ties: the first in line-up order)."""
    scores = validation_scores(models, valid)
    if not scores:
        raise KeyError(f"no ranker among the trained models {sorted(models)}")
    return max(scores, key=scores.__getitem__)


def describe(model: object) -> dict[str, object]:
    """Hyperparameters of ``model`` as flat, loggable values (for MLflow params)."""
    if isinstance(model, ListwiseRanker):
        params: dict[str, object] = dataclasses.asdict(model.config)
    else:
        params = {k: v for k, v in vars(model).items() if not k.endswith("_")}
    params.pop("feature_columns", None)
    params["model_class"] = type(model).__name__
    params["n_features"] = len(getattr(model, "feature_columns", []))
    return {k: str(v) if isinstance(v, tuple | list) else v for k, v in params.items()}
