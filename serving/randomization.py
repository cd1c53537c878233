"""The randomisation intervention: how the service lets the system measure position bias.

In a configurable share of requests (``Settings.serving.randomized_share``) the service
shows its own top ``randomized_top_k`` items in a uniformly random order. Within those
positions every item is then equally likely to sit anywhere, so the click-through rate per
position is the examination curve itself (``models/propensity.py`` estimates it from the
logs). The response and the prediction-log row say exactly what was done: how many top
positions were shuffled (``randomized_top_k``, 0 for none) and the order shown
(``shown_order``; the model's own order is the order of its logged scores).

Which requests: a hash of the request id against the share, so the decision is reproducible
from the log alone and needs no shared state between workers. The shuffle draws from a
generator seeded by the same hash. The cost to users (clicks lost in the shuffled requests)
is measured by ``python -m benchmarks.position_bias``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Randomization:
    share: float  # of requests, in [0, 1]
    top_k: int  # how many of the top positions are shuffled

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"randomized_share must lie in [0, 1], got {self.share}")
        if self.top_k < 2:
            raise ValueError(f"randomized_top_k must be at least 2, got {self.top_k}")

    def apply(self, request_id: str, order: np.ndarray) -> tuple[np.ndarray, int]:
        """(the order to show, how many top positions were shuffled: 0 for none)."""
        if self.share == 0.0 or len(order) < 2:
            return order, 0
        digest = hashlib.sha256(request_id.encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= self.share:
            return order, 0
        k = min(self.top_k, len(order))
        rng = np.random.default_rng(int.from_bytes(digest[8:16], "big"))
        shown = order.copy()
        shown[:k] = rng.permutation(order[:k])
        return shown, k
