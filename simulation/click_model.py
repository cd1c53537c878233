"""The ground truth of user behaviour: what a user wants, and how they click on a ranked list.

Everything that decides a click lives here, so the generator, the traffic simulator, the A/B
users and the debiasing code all share one definition of the truth.

A click follows the position-based model (PBM)::

    P(click | position p, utility u) = P(examined | p, device) * P(attracted | u)
    P(examined | p, device) = (1 / p) ** eta[device]
    P(attracted | u)        = sigmoid(attraction_slope * (u - attraction_midpoint))
    P(purchase | click, u)  = purchase_ceiling * sigmoid(purchase_slope * (u - purchase_midpoint))

Examination depends only on where an item is shown, attraction only on what it is. This split
is what makes logged clicks position-biased, and what inverse-propensity weighting undoes
(the propensity of position ``p`` is ``examination(p, device)``).

The utility of showing item ``i`` to user ``u`` in context ``x`` (device, region, query
category) is, with ``d`` taste dimensions::

    utility = quality_i
            + taste_weight[category_i] * dot(taste_u, embedding_i) / sqrt(d)
            + category_match_bonus * [category_i == query_category_x]
            - price_sensitivity_u * (softplus(log(price_i / median_price[category_i])) - log 2)
            + device_affinity[device_x][category_i]
            + region_noise_sd[region_x] * standard_normal()

The price term is convex: an item dearer than its category's median costs more utility than an
equally cheaper one gains, and price-sensitive users feel it more. The taste weight differs per
category (books and fashion are personal, grocery and electronics are about quality), so query
categories differ in how much personalisation matters. The noise is the part no feature can
explain; its size differs per region, so regions differ in how well any model can do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ranklab.schema import CATEGORIES, DEVICES, REGIONS  # the data contract's vocabularies

TASTE_DIM = 8  # length of users' latent_taste_* and items' latent_embedding_* vectors

# Median price per category: item prices are log-normal around these, and the price term of
# the utility measures an item's price against its own category's median.
MEDIAN_PRICE = {
    "electronics": 250.0,
    "fashion": 45.0,
    "home": 80.0,
    "beauty": 25.0,
    "sports": 60.0,
    "books": 15.0,
    "toys": 30.0,
    "grocery": 8.0,
}

# Ground-truth latent columns the utility reads (the raw tables keep them beside the features).
TASTE_COLUMNS = tuple(f"latent_taste_{k}" for k in range(TASTE_DIM))
EMBEDDING_COLUMNS = tuple(f"latent_embedding_{k}" for k in range(TASTE_DIM))
PRICE_SENSITIVITY = "latent_price_sensitivity"
QUALITY = "latent_quality"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _codes(values: pd.Series | np.ndarray, vocabulary: tuple[str, ...], what: str) -> np.ndarray:
    """Map labels to their index in ``vocabulary``; unknown labels are an error, not a NaN."""
    codes = pd.Index(vocabulary).get_indexer(np.asarray(values))
    if (codes < 0).any():
        unknown = sorted(set(np.asarray(values)[codes < 0].tolist()))[:5]
        raise ValueError(f"unknown {what} {unknown}; expected one of {vocabulary}")
    return codes


def _lookup(
    table: Mapping[str, float],
    labels: pd.Series | np.ndarray,
    vocabulary: tuple[str, ...],
    what: str,
) -> np.ndarray:
    """``table[label]`` for every label, vectorised through the labels' codes."""
    return np.array([table[v] for v in vocabulary])[_codes(labels, vocabulary, what)]


@dataclass(frozen=True)
class ClickModel:
    """Parameters of the simulated users. The defaults are the embedded marketplace's truth.

    Frozen so that a model passed around the pipeline cannot drift; derive a variant with
    ``dataclasses.replace`` (e.g. a steeper mobile curve for a drift scenario).
    """

    # Examination exponent per device: small screens show fewer items, so users look less far.
    examination_eta: Mapping[str, float] = field(
        default_factory=lambda: {"desktop": 0.5, "tablet": 0.7, "mobile": 1.0}
    )
    attraction_slope: float = 1.2
    attraction_midpoint: float = 3.5
    purchase_ceiling: float = 0.5  # even a perfect item is bought on at most half its clicks
    purchase_slope: float = 1.5
    purchase_midpoint: float = 4.0
    # Upper bounds of grades 0..3 on the utility scale; above the last is grade 4.
    relevance_cutpoints: tuple[float, float, float, float] = (1.0, 2.0, 3.0, 4.0)
    category_match_bonus: float = 1.5
    taste_weight: Mapping[str, float] = field(
        default_factory=lambda: {
            "electronics": 0.5,
            "fashion": 1.4,
            "home": 0.8,
            "beauty": 1.1,
            "sports": 0.8,
            "books": 1.5,
            "toys": 0.9,
            "grocery": 0.4,
        }
    )
    # Device x category interaction: phones sell fashion, desktops sell electronics.
    device_affinity: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {
            "mobile": {"fashion": 0.4, "beauty": 0.3, "electronics": -0.3, "home": -0.2},
            "desktop": {"electronics": 0.4, "books": 0.2, "fashion": -0.2},
            "tablet": {"books": 0.3, "toys": 0.3},
        }
    )
    region_noise_sd: Mapping[str, float] = field(
        default_factory=lambda: {
            "north": 0.4,
            "south": 0.6,
            "east": 0.8,
            "west": 1.0,
            "central": 1.2,
        }
    )

    # ---- how users look at a list ----
    def examination(self, position: np.ndarray, device: pd.Series | np.ndarray) -> np.ndarray:
        """P(examined | 1-based position, device) = (1/position) ** eta[device]; 1 at the top."""
        position = np.asarray(position, dtype=float)
        if (position < 1).any():
            raise ValueError("positions are 1-based; got a position below 1")
        return position ** -_lookup(self.examination_eta, device, DEVICES, "device")

    def attraction(self, true_utility: np.ndarray) -> np.ndarray:
        """P(click | examined): rises with utility, 0.5 at ``attraction_midpoint``."""
        return _sigmoid(
            self.attraction_slope * (np.asarray(true_utility) - self.attraction_midpoint)
        )

    def click_probability(
        self, true_utility: np.ndarray, position: np.ndarray, device: pd.Series | np.ndarray
    ) -> np.ndarray:
        """P(click) under the position-based model: examined and attracted, independently."""
        return self.examination(position, device) * self.attraction(true_utility)

    def purchase_probability(self, true_utility: np.ndarray) -> np.ndarray:
        """P(purchase | click): only clearly good items get bought."""
        u = np.asarray(true_utility)
        return self.purchase_ceiling * _sigmoid(self.purchase_slope * (u - self.purchase_midpoint))

    def relevance_grade(self, true_utility: np.ndarray) -> np.ndarray:
        """Graded relevance 0..4 from fixed cut-points: the gain of NDCG on the truth."""
        return np.digitize(np.asarray(true_utility), self.relevance_cutpoints).astype(np.int64)

    # ---- what users want ----
    def true_utility(
        self,
        users: pd.DataFrame,
        items: pd.DataFrame,
        context: pd.DataFrame,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Utility of each (user, item, context) row; the formula is in the module docstring.

        The three frames are row-aligned (row ``r`` of each describes one impression):
        ``users`` holds ``latent_taste_*`` and ``latent_price_sensitivity``; ``items`` holds
        ``latent_quality``, ``latent_embedding_*``, ``category`` and ``price``; ``context``
        holds ``device``, ``region`` and ``query_category``. With ``rng=None`` the region noise
        is left out, which gives the expected utility (what a perfect model could predict).
        """
        if not len(users) == len(items) == len(context):
            raise ValueError(
                f"users, items and context must be row-aligned; got {len(users)}, "
                f"{len(items)} and {len(context)} rows"
            )
        category = _codes(items["category"], CATEGORIES, "item category")
        query = _codes(context["query_category"], CATEGORIES, "query category")
        utility = (
            items[QUALITY].to_numpy(dtype=float)
            + self._taste_term(users, items, category)
            + self.category_match_bonus * (category == query)
            - self._price_penalty(users, items, category)
            + self._device_affinity(context["device"], category)
        )
        if rng is not None:
            sd = _lookup(self.region_noise_sd, context["region"], REGIONS, "region")
            utility += sd * rng.standard_normal(len(utility))
        return utility

    def _taste_term(
        self, users: pd.DataFrame, items: pd.DataFrame, category: np.ndarray
    ) -> np.ndarray:
        """Personal fit: scaled so the dot product has unit variance for standard-normal latents."""
        taste = users[list(TASTE_COLUMNS)].to_numpy(dtype=float)
        embedding = items[list(EMBEDDING_COLUMNS)].to_numpy(dtype=float)
        weight = np.array([self.taste_weight[c] for c in CATEGORIES])[category]
        return weight * np.einsum("rd,rd->r", taste, embedding) / np.sqrt(TASTE_DIM)

    @staticmethod
    def _price_penalty(
        users: pd.DataFrame, items: pd.DataFrame, category: np.ndarray
    ) -> np.ndarray:
        """Convex in log relative price, zero at the category median, scaled per user."""
        median = np.array([MEDIAN_PRICE[c] for c in CATEGORIES])[category]
        log_ratio = np.log(items["price"].to_numpy(dtype=float) / median)
        sensitivity = users[PRICE_SENSITIVITY].to_numpy(dtype=float)
        return sensitivity * (np.logaddexp(0.0, log_ratio) - np.log(2.0))

    def _device_affinity(self, device: pd.Series, category: np.ndarray) -> np.ndarray:
        table = np.array(
            [[self.device_affinity.get(d, {}).get(c, 0.0) for c in CATEGORIES] for d in DEVICES]
        )
        return table[_codes(device, DEVICES, "device"), category]
