"""One FeatureService per model version: the contract training and serving share.

A new model version that needs different features gets a new service (ranker_v2) beside
this one, so the serving champion keeps reading exactly what it was trained on.
"""

from __future__ import annotations

from feast import FeatureService, FeatureView, OnDemandFeatureView

from features import aggregates

RANKER_V1 = "ranker_v1"


def ranker_v1(
    views: dict[str, FeatureView], ranking_context: OnDemandFeatureView
) -> FeatureService:
    """Every stored feature except the item's category string (used only as a lookup key and
    inside ranking_context), plus the request-time features."""
    attributes = views[aggregates.ITEM_ATTRIBUTES]
    return FeatureService(
        name=RANKER_V1,
        features=[
            views[aggregates.ITEM_STATS],
            attributes[["item_price", "item_price_vs_category_median"]],
            views[aggregates.USER_STATS],
            views[aggregates.USER_CATEGORY_AFFINITY],
            ranking_context,
        ],
        description="Features of ranker v1 (the first PyTorch and scikit-learn rankers).",
        tags={"model": "ranker", "version": "1"},
    )
