"""Serving's feature reader against Feast's own online path, on the real online stores: SQLite
(the default) and Redis (the ``services`` profile).

``features.store.online_features`` is the reference: the Feast SDK with the feature service
and its on-demand view. The serving reader caches item rows and applies the on-demand
transformation itself; these tests prove it returns the same frame, whatever is known.
"""

# ruff: noqa: F811 - pytest fixtures imported from serving_fixtures are parameters here
from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd
import pytest
from feast import FeatureStore
from serving_fixtures import (  # noqa: F401 - serving_state is a fixture
    TINY_DATA,
    ServingState,
    copy_state,
    feature_rows_deleted,
    reachable,
    serving_state,
)

from features import aggregates
from features.store import apply_definitions, feature_store, materialize, online_features
from serving.online_features import ItemFeatureCache, MissingFeatureError, OnlineFeatureReader
from simulation.generator import generate_marketplace

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # the shared state takes ~30 s to build

UNKNOWN_USER, UNKNOWN_ITEMS = 10**9, [10**6, 10**6 + 7]


@pytest.fixture(params=[0.0, 60.0], ids=["no-cache", "cache"])
def reader(serving_state: ServingState, request) -> OnlineFeatureReader:
    cache = ItemFeatureCache(ttl_seconds=request.param, max_items=10_000)
    return OnlineFeatureReader(feature_store(serving_state.settings), "ranker_v1", cache)


@pytest.mark.parametrize("query_category", ["books", "grocery"])
@pytest.mark.parametrize("known_user", [True, False], ids=["known-user", "new-user"])
def test_reader_returns_exactly_what_feast_returns(
    serving_state: ServingState, reader: OnlineFeatureReader, query_category, known_user
):
    user = serving_state.known_users[7] if known_user else UNKNOWN_USER
    items = serving_state.known_items[:40] + UNKNOWN_ITEMS
    expected = online_features(reader.store, user, items, query_category)[reader.feature_columns]

    for _ in range(2):  # the second read comes from the item cache when it is on
        got = reader.read(user, query_category, items)
        pd.testing.assert_frame_equal(got.frame, expected.astype("float64"), check_exact=False)
    assert got.cold_user is not known_user
    assert got.cold_items == UNKNOWN_ITEMS


def test_reader_serves_the_features_the_model_was_trained_on(serving_state, reader):
    assert reader.feature_columns == serving_state.feature_columns


def test_a_known_entity_lacking_a_feature_raises_instead_of_inventing_it(serving_state, reader):
    user, items = serving_state.known_users[7], serving_state.known_items[:5]
    with (
        feature_rows_deleted(serving_state.settings, "user_stats", "user_clicks_28d"),
        pytest.raises(MissingFeatureError, match=r"user_stats: \['user_clicks_28d'\]"),
    ):
        reader.read(user, "books", items)
    assert reader.read(user, "books", items).cold_user is False  # restored


@pytest.fixture(scope="module")
def redis_store(serving_state: ServingState, tmp_path_factory) -> Iterator[FeatureStore]:
    """The serving state's features materialized into Redis, the ``services`` profile's online
    store, under a Feast project of its own (its keys are removed afterwards)."""
    copied = copy_state(serving_state, tmp_path_factory.mktemp("redis") / "state")
    settings = copied.model_copy(
        update={
            "profile": "services",
            "feast": copied.feast.model_copy(update={"project": f"ranklab_test_{os.getpid()}"}),
        }
    )
    host, port = settings.feast.redis_connection.rsplit(":", 1)
    if not reachable(host, int(port)):
        pytest.skip(f"no Redis at {settings.feast.redis_connection} (the services profile's)")
    store = apply_definitions(settings)
    assert store.config.online_store.type == "redis"
    try:
        materialize(
            store, aggregates.snapshot_days(generate_marketplace(TINY_DATA))[-1].to_pydatetime()
        )
        yield store
    finally:
        store.teardown()


@pytest.mark.parametrize("known_user", [True, False], ids=["known-user", "new-user"])
def test_reader_on_redis_returns_exactly_what_feast_returns(serving_state, redis_store, known_user):
    reader = OnlineFeatureReader(redis_store, "ranker_v1", ItemFeatureCache(60, 10_000))
    user = serving_state.known_users[7] if known_user else UNKNOWN_USER
    items = serving_state.known_items[:40] + UNKNOWN_ITEMS
    expected = online_features(redis_store, user, items, "books")[reader.feature_columns]

    got = reader.read(user, "books", items)

    pd.testing.assert_frame_equal(got.frame, expected.astype("float64"), check_exact=False)
    assert (got.cold_user, got.cold_items) == (not known_user, UNKNOWN_ITEMS)
