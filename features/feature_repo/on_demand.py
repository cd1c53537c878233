"""Request-time features: computed by Feast from the request and stored features, the same
function offline (training set) and online (serving), so they cannot drift apart.

The function body is serialised into the registry, so it imports what it needs inside and
reads no module globals. The arithmetic lives in ``ranking_context.py`` (numpy), which the
view's pandas function and the serving reader both call (``ARRAY_TRANSFORMS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from feast import FeatureView, Field, OnDemandFeatureView, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from features.feature_repo.ranking_context import compute_ranking_context
from ranklab import schema

RANKING_CONTEXT = "ranking_context"

# name: (Feast type, default, description); the function below always returns a value, the
# default only covers a request that omits the inputs.
ON_DEMAND = {
    "query_matches_category": (Int64, 0, "1 when the item is in the query's category."),
    "price_vs_user_usual": (
        Float64,
        1.0,
        "Item price over the mean price the user clicked in 28 days; 1.0 when either is unknown.",
    ),
}


def ranking_request() -> RequestSource:
    """What the caller sends with each ranking request (besides the entity keys)."""
    return RequestSource(
        name="ranking_request",
        schema=[Field(name=schema.QUERY_CATEGORY, dtype=String)],
        description="Context of a search: the category the query asks for.",
    )


def ranking_context_view(
    item_attributes: FeatureView, user_stats: FeatureView, request: RequestSource
) -> OnDemandFeatureView:
    """query_matches_category and price_vs_user_usual from the request and stored features."""

    @on_demand_feature_view(
        name=RANKING_CONTEXT,
        sources=[item_attributes, user_stats, request],
        # No per-field descriptions: Feast checks this schema against the one it infers by
        # running the function, and inferred fields carry none (they live in ON_DEMAND).
        schema=[Field(name=name, dtype=dtype) for name, (dtype, _, _) in ON_DEMAND.items()],
        mode="pandas",
        description="Features of the (request, item, user) triple, computed at request time.",
    )
    def ranking_context(inputs: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        # Imported when the function runs: the registry holds this body, not the module, and
        # whoever runs it (training, Feast's online path) has ranklab installed.
        from features.feature_repo.ranking_context import compute_ranking_context

        # Offline a missing row arrives as NaN, online as None: prices become float64 with
        # NaN, categories objects with None, the arrays the numpy function takes.
        def numbers(name: str):
            return pd.to_numeric(inputs[name], errors="coerce").to_numpy(float)

        def strings(name: str):
            return inputs[name].astype("string").to_numpy(dtype=object, na_value=None)

        values = compute_ranking_context(
            {
                "item_price": numbers("item_price"),
                "user_mean_clicked_price_28d": numbers("user_mean_clicked_price_28d"),
                "category": strings("category"),
                "query_category": strings("query_category"),
            }
        )
        return pd.DataFrame(values, index=inputs.index)

    return ranking_context


# View name -> the numpy function its pandas function calls, for callers that hold arrays
# (the serving reader): the same values without a DataFrame in and out.
ARRAY_TRANSFORMS: dict[str, Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]] = {
    RANKING_CONTEXT: compute_ranking_context,
}
