"""Request-time features: computed by Feast from the request and stored features, the same
function offline (training set) and online (serving), so they cannot drift apart.

The function body is serialised into the registry, so it imports what it needs inside and
reads no module globals.
"""

from __future__ import annotations

import pandas as pd
from feast import FeatureView, Field, OnDemandFeatureView, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

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
        import numpy as np
        import pandas as pd

        # Offline a missing row arrives as NaN, online as None: coerce both to NaN.
        item_price = pd.to_numeric(inputs["item_price"], errors="coerce").to_numpy(float)
        usual_price = pd.to_numeric(
            inputs["user_mean_clicked_price_28d"], errors="coerce"
        ).to_numpy(float)
        known = (item_price > 0) & (usual_price > 0)  # 0 and NaN both mean "unknown"
        ratio = np.ones(len(inputs))
        np.divide(item_price, usual_price, out=ratio, where=known)
        matches = inputs["category"].astype("string") == inputs["query_category"].astype("string")
        return pd.DataFrame(
            {
                "query_matches_category": matches.fillna(False).astype("int64").to_numpy(),
                "price_vs_user_usual": ratio,
            },
            index=inputs.index,
        )

    return ranking_context
