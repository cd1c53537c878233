"""The request-time features' arithmetic, on numpy arrays: one function for every path.

The Feast on-demand view ``ranking_context`` (``on_demand.py``) calls it from its pandas
function, so the training set (``get_historical_features``) and Feast's online path compute
these features with it; the serving reader (``serving/online_features.py``) calls it directly
on the arrays it already holds. Going through the view's pandas function costs a request
~0.5 ms (a DataFrame in, ``astype("string")`` comparisons, a DataFrame out) for ~0.05 ms of
arithmetic, and the same function in both places keeps the values identical
(``tests/unit/test_ranking_context.py``).

Inputs, keyed by the names the view declares as its sources:
- ``item_price``, ``user_mean_clicked_price_28d``: float64, NaN where unknown;
- ``category`` (the item's), ``query_category`` (the request's): objects, strings or None.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

ITEM_PRICE = "item_price"
USUAL_PRICE = "user_mean_clicked_price_28d"
ITEM_CATEGORY = "category"
QUERY_CATEGORY = "query_category"
INPUTS = (ITEM_CATEGORY, ITEM_PRICE, USUAL_PRICE, QUERY_CATEGORY)


def compute_ranking_context(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``query_matches_category`` (int64 0/1) and ``price_vs_user_usual`` (float64) per row."""
    item_price = np.asarray(inputs[ITEM_PRICE], dtype=np.float64)
    usual_price = np.asarray(inputs[USUAL_PRICE], dtype=np.float64)
    known = (item_price > 0) & (usual_price > 0)  # 0 and NaN both mean "unknown"
    ratio = np.ones(len(item_price))
    np.divide(item_price, usual_price, out=ratio, where=known)
    # Object arrays compare element by element with Python's ==: None (an unknown item) and
    # NaN equal no category, so an unknown item never matches the query.
    categories = np.asarray(inputs[ITEM_CATEGORY], dtype=object)
    matches = categories == np.asarray(inputs[QUERY_CATEGORY], dtype=object)
    return {
        "query_matches_category": matches.astype(np.int64),
        "price_vs_user_usual": ratio,
    }
