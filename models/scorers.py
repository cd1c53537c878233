"""A model as monitoring, the A/B readout and the simulator call it: a frame in, a score per
row out. ``RegisteredScorer`` is a registered version of the ranker, loaded as serving
loads it (the MLflow pyfunc)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from models.pyfunc import score
from models.registry import Registry


class Scorer(Protocol):
    """A model as serving calls it (``models/pyfunc.py``): ``session_id`` and the feature
    columns in, a score per row out (higher first). A listwise model scores an item relative
    to the others of its session, so each request is passed as one session."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


class RegisteredScorer:
    """A registered version of the ranker: the pyfunc serving loads."""

    def __init__(self, registry: Registry, version: str | int) -> None:
        self.version = str(version)
        self.model = registry.load(self.version)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return score(self.model, frame, who=f"ranker v{self.version}")


class ChampionScorer(RegisteredScorer):
    """The registered champion, resolved once."""

    def __init__(self, registry: Registry) -> None:
        # Resolve the alias once and load that version, so the name and the model agree
        # even if `champion` moves meanwhile.
        super().__init__(registry, registry.champion_version().version)
