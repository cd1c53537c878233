"""The fallback: why the champion could not answer, and the popularity ranker that answers.

The popularity ranker is ``models.popularity.PopularityRanker`` (the offline baseline, so
its quality is known from every evaluation) applied to each item's newest ``item_stats``
snapshot, read from the offline feature table at start-up. It needs neither the online
store nor the registry, the two things whose failure sends requests here, and scoring is a
dictionary lookup (microseconds). An item the table does not know gets the documented
default of the popularity column (the prior CTR of a new item).

The table is re-read when the feature table's file changes (``refresh``), so the fallback
follows the daily feature pipeline without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from features import aggregates
from features.store import FEATURE_DEFAULTS
from models.popularity import DEFAULT_POPULARITY_COLUMN, PopularityRanker
from ranklab import schema
from ranklab.settings import Settings

logger = logging.getLogger(__name__)

POPULARITY = "popularity"


class FallbackReason(StrEnum):
    """Why a request was not scored by the champion; ``served_by`` is ``fallback:<reason>``."""

    NO_MODEL = "no_model"  # no champion loaded (registry unreachable and nothing cached)
    ONLINE_STORE_UNAVAILABLE = "online_store_unavailable"  # the read raised
    ONLINE_STORE_TIMEOUT = "online_store_timeout"  # locked or slow past the budget
    FEATURE_MISSING = "feature_missing"  # a known entity's row lacks features
    MODEL_ERROR = "model_error"  # the model raised or returned non-finite scores
    MODEL_TIMEOUT = "model_timeout"  # the model took longer than its budget


class PopularityFallback:
    """Scores items by ``PopularityRanker`` over the newest item_stats snapshot."""

    name = POPULARITY

    def __init__(self, table_path: Path, column: str = DEFAULT_POPULARITY_COLUMN) -> None:
        self.table_path = Path(table_path)
        self.column = column
        self.version = "empty"  # "item_stats@<snapshot day>" once loaded
        self._scores: dict[int, float] = {}
        self._default = float(FEATURE_DEFAULTS[column])
        self._mtime: float | None = None

    def load(self) -> PopularityFallback:
        """Read the table now; raises when it cannot be read (start-up must know)."""
        mtime = self.table_path.stat().st_mtime
        snapshot = newest_snapshot(pd.read_parquet(self.table_path))
        ranker = PopularityRanker(feature_columns=[self.column], column=self.column)
        scores = ranker.fit(snapshot).predict(snapshot)
        self._scores = dict(zip(snapshot[schema.ITEM_ID].tolist(), scores.tolist(), strict=True))
        day = pd.Timestamp(snapshot[schema.EVENT_TIMESTAMP].max()).strftime("%Y-%m-%d")
        self.version, self._mtime = f"item_stats@{day}", mtime
        logger.info("popularity fallback: %d items from %s", len(self._scores), self.version)
        return self

    def refresh(self) -> bool:
        """Reload when the table file changed since the last load; True when it reloaded."""
        try:
            changed = self.table_path.stat().st_mtime != self._mtime
        except OSError:
            return False  # keep the table we have; the pipeline may be rewriting it
        if changed:
            self.load()
        return changed

    def score(self, item_ids: Sequence[int]) -> np.ndarray:
        scores = self._scores
        default = self._default
        return np.fromiter(
            (scores.get(item_id, default) for item_id in item_ids),
            dtype=np.float64,
            count=len(item_ids),
        )

    @property
    def known_items(self) -> int:
        return len(self._scores)

    @property
    def item_ids(self) -> list[int]:
        """The catalogue as of the newest snapshot (the item cache warms up with it)."""
        return list(self._scores)

    @classmethod
    def for_settings(cls, settings: Settings) -> PopularityFallback:
        """Over the item_stats feature table of ``settings`` (not loaded yet)."""
        return cls(aggregates.feature_table_path(settings, aggregates.ITEM_STATS))


def newest_snapshot(item_stats: pd.DataFrame) -> pd.DataFrame:
    """Each item's newest row (the snapshot the online store would serve)."""
    ordered = item_stats.sort_values(schema.EVENT_TIMESTAMP, kind="stable")
    return ordered.drop_duplicates(schema.ITEM_ID, keep="last").reset_index(drop=True)
