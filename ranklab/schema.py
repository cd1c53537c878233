"""Contracts every stage reads: table and column names, vocabularies, the training-set shape.

The raw tables (``features/events.py`` reads them, ``features/validation.py`` checks them)
hold exactly the columns of ``RAW_COLUMNS``: what a marketplace's own logs hold. Nothing the
system reads carries ground truth; the simulated world keeps its truth to itself
(``simulation/``) and grades the system with it, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

RAW_TABLES = ("users", "items", "sessions", "impressions", "clicks")

# ---- the data contract's vocabularies ----
# The values each categorical column may take. Validation refuses anything else, serving
# refuses requests outside them, and the slices are cut along them. The embedded marketplace
# (``simulation/``) is generated with these; on your own data, set them to your own values.
DEVICES = ("mobile", "desktop", "tablet")
REGIONS = ("north", "south", "east", "west", "central")
CATEGORIES = ("electronics", "fashion", "home", "beauty", "sports", "books", "toys", "grocery")

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
# The observed label weighted by the inverse of its estimated examination propensity
# (models/propensity.py): an estimate of relevance free of position bias, from logs alone.
DEBIASED_LABEL = "label_ipw"
SPLIT = "split"

SPLITS = ("train", "valid", "test")

# The data contract: the columns of each raw table, and only these are ever read.
RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": (USER_ID, REGION, "preferred_device", "signup_ts"),
    "items": (ITEM_ID, "category", "brand", "price", "launch_ts"),
    "sessions": (SESSION_ID, USER_ID, "ts", DEVICE, REGION, QUERY_CATEGORY),
    "impressions": (SESSION_ID, ITEM_ID, POSITION, RANDOMIZED, POLICY_POSITION),
    "clicks": (SESSION_ID, ITEM_ID, "ts", PURCHASED),
}
SLICE_COLUMNS = (DEVICE, REGION, USER_SEGMENT, QUERY_CATEGORY)

Source = Literal["generated", "letor"]


@dataclass
class TrainingSet:
    """One frame of (session, item) rows, the contract between features and models.

    ``frame`` holds one row per shown item: the keys, ``feature_columns``, ``LABEL``,
    ``SPLIT`` and, where logged, ``POSITION``, ``RANDOMIZED``, ``CLICKED``, ``PURCHASED``
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
