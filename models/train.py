"""Fit every model of one experiment on the same training set, timing each fit.

The line-up, weakest to strongest in intent:
- ``popularity``: the item's smoothed CTR (or LETOR's best single feature); also the
  serving fallback and the gate's baseline.
- ``pointwise``: a scikit-learn classifier of clicks, one row at a time.
- ``ranker_naive``: the PyTorch listwise ranker trained on clicks as logged.
- ``ranker_ipw``: the same ranker trained on position-debiased clicks; only where logged
  positions exist (generated data), and then it is the candidate for promotion.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass

from models.base import Ranker
from models.popularity import DEFAULT_POPULARITY_COLUMN, PopularityRanker
from models.ranker import ListwiseRanker, RankerConfig
from models.sklearn_baseline import PointwiseClassifier
from ranklab.schema import CLICKED, DEVICE, POSITION, Source, TrainingSet

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
    """Inverse-propensity weighting needs the logged position and device of each click."""
    columns = ts.frame.columns
    return all(c in columns for c in (POSITION, DEVICE, CLICKED)) and bool(
        ts.frame[POSITION].notna().all()
    )


def candidate_name(models: Mapping[str, object]) -> str:
    """The model that goes to the registry and the gate: the debiased ranker where there is one."""
    for name in (RANKER_IPW, RANKER_NAIVE):
        if name in models:
            return name
    raise KeyError(f"no ranker among the trained models {sorted(models)}")


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
