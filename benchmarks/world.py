"""The world a benchmark measures in: a generated marketplace, its features in Feast, the
training set, and the models of ``models/train.py``, built through the pipeline's own
functions (not the Dagster job, so a benchmark controls scale, seed and folder)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features import aggregates
from features.store import apply_definitions
from features.training_set import build_training_set
from models import train
from models.debiasing import debiased
from ranklab.schema import TrainingSet
from ranklab.settings import DataSettings, Settings
from simulation.generator import generate_marketplace


@dataclass
class TrainingWorld:
    settings: Settings
    tables: dict[str, pd.DataFrame]
    training_set: TrainingSet
    models: dict[str, object]  # unfitted, by name
    candidate: str  # the ranker the benchmarks serve: the position-debiased one
    seconds: float

    def fit(self, name: str) -> object:
        """Model ``name`` fitted on the train split (the ranker stops early on valid)."""
        return self.models[name].fit(
            self.training_set.part("train"), self.training_set.part("valid")
        )


def build_training_world(state: Path, scale: float, seed: int) -> TrainingWorld:
    settings = Settings(state_dir=state, data=DataSettings(scale=scale), seed=seed)
    started = time.perf_counter()
    tables = generate_marketplace(settings.data)
    aggregates.write_feature_tables(aggregates.compute_feature_tables(tables), settings)
    training_set = build_training_set(settings, tables, apply_definitions(settings))
    training_set = debiased(training_set, settings)  # as the pipeline's debiased_training_data
    models = train.build_models(training_set, seed=seed, progress=False)
    return TrainingWorld(
        settings,
        tables,
        training_set,
        models,
        train.RANKER_IPW if train.RANKER_IPW in models else train.RANKER_NAIVE,
        time.perf_counter() - started,
    )
