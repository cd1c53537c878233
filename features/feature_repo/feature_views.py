"""Feature views over the daily snapshot tables, and the default of every feature.

Each table holds one snapshot per entity per day (features/aggregates.py), so a row is valid
until the next one: the TTL is one day. A longer TTL would quietly serve a stale row if a
day's snapshot were missing; with one day, a missing row reads as "unknown" and gets its
default. The defaults live beside the schema because training and serving must fill the
same gaps with the same values (features.store.fill_defaults applies them).
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.types import Float64, Int64, PrimitiveFeastType, String

from features import aggregates
from features.aggregates import CTR_PRIOR_MEAN, UNKNOWN_PRICE
from features.feature_repo.entities import item, item_category, user

SNAPSHOT_TTL = timedelta(days=1)

FeatureSpec = tuple[PrimitiveFeastType, float | str, str]  # (Feast type, default, description)

# The default is what a missing row means: a new item has no impressions and the prior CTR.
ITEM_STATS: dict[str, FeatureSpec] = {
    "item_impressions_7d": (Int64, 0, "Times shown in the 7 days before the snapshot."),
    "item_clicks_7d": (Int64, 0, "Clicks in the 7 days before the snapshot."),
    "item_ctr_7d": (Float64, CTR_PRIOR_MEAN, "Beta-smoothed CTR over 7 days."),
    "item_impressions_28d": (Int64, 0, "Times shown in the 28 days before the snapshot."),
    "item_clicks_28d": (Int64, 0, "Clicks in the 28 days before the snapshot."),
    "item_ctr_28d": (Float64, CTR_PRIOR_MEAN, "Beta-smoothed CTR over 28 days."),
    "item_purchases_28d": (Int64, 0, "Purchases in the 28 days before the snapshot (popularity)."),
    "item_age_days": (Float64, 0.0, "Days since launch."),
}
ITEM_ATTRIBUTES: dict[str, FeatureSpec] = {
    "category": (String, "", "The item's category (a lookup key, not a model input)."),
    "item_price": (Float64, UNKNOWN_PRICE, "List price; 0 means unknown."),
    "item_price_vs_category_median": (
        Float64,
        1.0,
        "Price over its category's median price (1.0: a typical price).",
    ),
}
USER_STATS: dict[str, FeatureSpec] = {
    "user_sessions_28d": (Int64, 0, "Search sessions in the 28 days before the snapshot."),
    "user_clicks_28d": (Int64, 0, "Clicks in the 28 days before the snapshot."),
    "user_ctr_28d": (Float64, CTR_PRIOR_MEAN, "Beta-smoothed CTR of the user over 28 days."),
    "user_mean_clicked_price_28d": (
        Float64,
        UNKNOWN_PRICE,
        "Mean price of the items clicked in 28 days; 0 means no clicks (unknown).",
    ),
    "user_days_since_signup": (Float64, 0.0, "Days since signup."),
}
USER_CATEGORY_AFFINITY: dict[str, FeatureSpec] = {
    "user_category_clicks_28d": (Int64, 0, "The user's clicks in this category over 28 days."),
    "user_category_click_share_28d": (
        Float64,
        0.0,
        "Share of the user's clicks over 28 days that were in this category.",
    ),
}

SPECS: dict[str, dict[str, FeatureSpec]] = {
    aggregates.ITEM_STATS: ITEM_STATS,
    aggregates.ITEM_ATTRIBUTES: ITEM_ATTRIBUTES,
    aggregates.USER_STATS: USER_STATS,
    aggregates.USER_CATEGORY_AFFINITY: USER_CATEGORY_AFFINITY,
}
ENTITIES_OF = {
    aggregates.ITEM_STATS: [item],
    aggregates.ITEM_ATTRIBUTES: [item],
    aggregates.USER_STATS: [user],
    aggregates.USER_CATEGORY_AFFINITY: [user, item_category],
}
DESCRIPTIONS = {
    aggregates.ITEM_STATS: "Item engagement over trailing windows, daily snapshots.",
    aggregates.ITEM_ATTRIBUTES: "Catalogue facts of an item, from launch, daily snapshots.",
    aggregates.USER_STATS: "User engagement over 28 days and tenure, daily snapshots.",
    aggregates.USER_CATEGORY_AFFINITY: "A user's click share per item category over 28 days.",
}


def feature_views(sources: dict[str, FileSource]) -> dict[str, FeatureView]:
    """One FeatureView per feature table, named like the table."""
    return {
        table: FeatureView(
            name=table,
            entities=ENTITIES_OF[table],
            ttl=SNAPSHOT_TTL,
            schema=[
                Field(name=name, dtype=dtype, description=description)
                for name, (dtype, _, description) in specs.items()
            ],
            source=sources[table],
            online=True,
            description=DESCRIPTIONS[table],
        )
        for table, specs in SPECS.items()
    }
