"""The Feast feature repository, in a few plainly named files (as in feast-workshop).

- entities.py: user, item, item_category
- data_sources.py: a parquet FileSource per feature table (paths from Settings)
- feature_views.py: a FeatureView per table, TTL one day, with each feature's default
- on_demand.py: request-time features (query_matches_category, price_vs_user_usual)
- feature_services.py: ranker_v1, the contract of one model version

Nothing here touches the disk: ``definitions(settings)`` builds the objects that
``features.store.apply_definitions`` registers.
"""

from __future__ import annotations

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView

from features import aggregates
from features.feature_repo.data_sources import feature_sources
from features.feature_repo.entities import ENTITIES
from features.feature_repo.feature_services import ranker_v1
from features.feature_repo.feature_views import feature_views
from features.feature_repo.on_demand import ranking_context_view, ranking_request
from ranklab.settings import Settings

FeastObject = Entity | FeatureView | OnDemandFeatureView | FeatureService


def definitions(settings: Settings) -> list[FeastObject]:
    """Every Feast object of the repository, ready for ``FeatureStore.apply``."""
    views = feature_views(feature_sources(settings))
    ranking_context = ranking_context_view(
        views[aggregates.ITEM_ATTRIBUTES], views[aggregates.USER_STATS], ranking_request()
    )
    return [*ENTITIES, *views.values(), ranking_context, ranker_v1(views, ranking_context)]
