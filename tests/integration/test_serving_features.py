"""Serving's feature reader against Feast's own online path, on a real SQLite online store.

``features.store.online_features`` is the reference: the Feast SDK with the feature service
and its on-demand view. The serving reader caches item rows and applies the on-demand
transformation itself; these tests prove it returns the same frame, whatever is known.
"""

# ruff: noqa: F811 - pytest fixtures imported from serving_fixtures are parameters here
from __future__ import annotations

import pandas as pd
import pytest
from serving_fixtures import ServingState, feature_rows_deleted, serving_state  # noqa: F401

from features.store import feature_store, online_features
from serving.online_features import ItemFeatureCache, MissingFeatureError, OnlineFeatureReader

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
