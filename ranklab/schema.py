"""Contracts every stage reads: table and column names, and the training-set shape.

Raw tables (``features/generator.py`` writes them, ``features/validation.py`` checks them):

- ``users``:       user_id, region, preferred_device, signup_ts, latent_* (ground truth only)
- ``items``:       item_id, category, brand, price, launch_ts, latent_* (ground truth only)
- ``sessions``:    session_id, user_id, ts, device, region, query_category
- ``impressions``: session_id, item_id, position (1-based), true_utility, true_relevance
- ``clicks``:      session_id, item_id, ts, purchased

Columns starting with ``latent_`` and ``true_`` are the generator's ground truth. They are
kept so results can be compared with the oracle, and never used as features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

RAW_TABLES = ("users", "items", "sessions", "impressions", "clicks")

# Keys
SESSION_ID = "session_id"
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TIMESTAMP = "event_timestamp"

# Context of a session (also the slice dimensions)
DEVICE = "device"
REGION = "region"
QUERY_CATEGORY = "query_category"
USER_SEGMENT = "user_segment"  # "new" or "returning" at the time of the session
ITEM_CATEGORY = "item_category"

# Labels and logging facts in the training set
POSITION = "position"  # logged position, 1-based: a training-only input, never a serving feature
# The randomisation intervention (position-bias estimation): True where the item's position was
# drawn at random (a uniform shuffle of the policy's top k); POLICY_POSITION is where the
# logging policy itself would have put the item, so the log says exactly what was randomised.
RANDOMIZED = "randomized"
POLICY_POSITION = "policy_position"
CLICKED = "clicked"
PURCHASED = "purchased"
LABEL = "label"  # graded relevance: 0 nothing, 1 click, 2 purchase (LETOR: the given grade)
TRUE_UTILITY = "true_utility"  # generator ground truth (real-valued); NaN for real data
# Ground-truth grade 0-4 from fixed cut-points of true_utility: the gain for NDCG on the truth.
TRUE_RELEVANCE = "true_relevance"
SPLIT = "split"

SPLITS = ("train", "valid", "test")
SLICE_COLUMNS = (DEVICE, REGION, USER_SEGMENT, QUERY_CATEGORY)

Source = Literal["generated", "letor"]


@dataclass
class TrainingSet:
    """One frame of (session, item) rows, the contract between features and models.

    ``frame`` holds one row per shown item: the keys, ``feature_columns``, ``LABEL``,
    ``SPLIT`` and, where known, ``POSITION``, ``CLICKED``, ``PURCHASED``, ``TRUE_UTILITY``
    and the slice columns. Rows of a session are contiguous and all in one split.
    """

    frame: pd.DataFrame
    feature_columns: list[str]
    source: Source
    metadata: dict[str, object] = field(default_factory=dict)

    def part(self, split: str) -> pd.DataFrame:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.frame[self.frame[SPLIT] == split]

    @property
    def slice_columns(self) -> list[str]:
        return [c for c in SLICE_COLUMNS if c in self.frame.columns]

    @property
    def has_ground_truth(self) -> bool:
        return TRUE_UTILITY in self.frame.columns and self.frame[TRUE_UTILITY].notna().any()
