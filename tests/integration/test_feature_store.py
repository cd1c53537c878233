"""The real Feast store (local provider, file offline store, SQLite online store) over small
generated data: point-in-time values, offline/online parity, and the training set."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import yaml
from feast import FeatureStore

from features import aggregates, store
from features.feature_repo.feature_services import RANKER_V1
from features.training_set import (
    build_training_set,
    historical_features,
    load_training_set,
    save_training_set,
)
from ranklab import schema
from ranklab.settings import DataSettings, Settings, get_settings
from simulation.generator import generate_marketplace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return get_settings(
        state_dir=tmp_path_factory.mktemp("state"), data=DataSettings(scale=0.05, seed=11)
    )


@pytest.fixture(scope="module")
def market(settings) -> dict[str, pd.DataFrame]:
    return generate_marketplace(settings.data)


@pytest.fixture(scope="module")
def feature_tables(settings, market) -> dict[str, pd.DataFrame]:
    tables = aggregates.compute_feature_tables(market)
    aggregates.write_feature_tables(tables, settings)
    return tables


@pytest.fixture(scope="module")
def feast_store(settings, feature_tables) -> FeatureStore:
    # The file offline store, whatever else is installed: it is the one every machine has.
    return store.apply_definitions(settings, offline_store="file")


def entity_rows(market: dict[str, pd.DataFrame], n: int, seed: int = 0) -> pd.DataFrame:
    """A sample of logged impressions as Feast entity rows (keys, time, request column)."""
    shown = (
        market["impressions"]
        .merge(market["sessions"], on=schema.SESSION_ID)
        .merge(market["items"][[schema.ITEM_ID, "category"]], on=schema.ITEM_ID)
        .sample(n, random_state=seed)
    )
    return pd.DataFrame(
        {
            schema.USER_ID: shown[schema.USER_ID].to_numpy(),
            schema.ITEM_ID: shown[schema.ITEM_ID].to_numpy(),
            schema.ITEM_CATEGORY: shown["category"].to_numpy(),
            schema.QUERY_CATEGORY: shown[schema.QUERY_CATEGORY].to_numpy(),
            schema.EVENT_TIMESTAMP: shown["ts"].to_numpy(),
            schema.SESSION_ID: shown[schema.SESSION_ID].to_numpy(),
        }
    )


def latest_row_at_or_before(table: pd.DataFrame, rows: pd.DataFrame, keys: list[str]):
    """The point-in-time join done by hand: the latest feature row at or before each row."""
    return pd.merge_asof(
        rows.sort_values(schema.EVENT_TIMESTAMP),
        table.sort_values(schema.EVENT_TIMESTAMP).rename(
            columns={schema.EVENT_TIMESTAMP: "snapshot_ts"}
        ),
        left_on=schema.EVENT_TIMESTAMP,
        right_on="snapshot_ts",
        by=keys,
        direction="backward",
    ).sort_values(schema.SESSION_ID, kind="stable")


def test_historical_features_are_the_point_in_time_values(feast_store, market, feature_tables):
    rows = entity_rows(market, 300).drop_duplicates([schema.ITEM_ID, schema.EVENT_TIMESTAMP])
    offline = feast_store.get_historical_features(
        entity_df=rows, features=feast_store.get_feature_service(RANKER_V1)
    ).to_df()
    assert len(offline) == len(rows)

    item_keys = [schema.SESSION_ID, schema.ITEM_ID]
    expected_items = latest_row_at_or_before(
        feature_tables[aggregates.ITEM_STATS], rows, [schema.ITEM_ID]
    ).set_index(item_keys)
    expected_users = latest_row_at_or_before(
        feature_tables[aggregates.USER_STATS], rows, [schema.USER_ID]
    ).set_index(item_keys)
    got = offline.set_index(item_keys).loc[expected_items.index]
    for column in ("item_clicks_7d", "item_impressions_28d", "item_ctr_28d", "item_age_days"):
        np.testing.assert_allclose(got[column], expected_items[column], err_msg=column)
    for column in ("user_clicks_28d", "user_mean_clicked_price_28d"):
        np.testing.assert_allclose(got[column], expected_users[column], err_msg=column)
    # every joined row is at most one TTL old, and never from after the session
    age = got[schema.EVENT_TIMESTAMP] - expected_items["snapshot_ts"]
    assert (age >= timedelta(0)).all() and (age <= timedelta(days=1)).all()


def test_a_session_never_sees_its_own_clicks(feast_store, market):
    clicked = market["clicks"].merge(market["sessions"][[schema.SESSION_ID, "ts"]], on="session_id")
    clicked = clicked.drop_duplicates(schema.ITEM_ID).head(25)
    rows = entity_rows(market, len(market["impressions"]))
    rows = rows.merge(
        clicked[[schema.SESSION_ID, schema.ITEM_ID]], on=[schema.SESSION_ID, "item_id"]
    )
    offline = feast_store.get_historical_features(
        entity_df=rows, features=[f"{aggregates.ITEM_STATS}:item_clicks_28d"]
    ).to_df()
    clicks = market["clicks"]
    for _, joined in offline.iterrows():
        session_day = joined[schema.EVENT_TIMESTAMP].floor("D")
        before_the_day = (
            (clicks[schema.ITEM_ID] == joined[schema.ITEM_ID])
            & (clicks["ts"] < session_day)
            & (clicks["ts"] >= session_day - pd.Timedelta(days=28))
        )
        assert joined["item_clicks_28d"] == before_the_day.sum()


def test_online_features_after_materialize_equal_offline_features(feast_store, market):
    end = aggregates.snapshot_days(market)[-1].to_pydatetime()
    store.materialize(feast_store, end)
    last_click = market["clicks"].sort_values("ts").iloc[-1]
    last_session = (
        market["sessions"].set_index(schema.SESSION_ID).loc[last_click[schema.SESSION_ID]]
    )
    shown = market["impressions"][schema.ITEM_ID].value_counts().index[:10].tolist()
    items = [int(last_click[schema.ITEM_ID]), *shown]
    users = [int(last_session[schema.USER_ID]), -1]  # -1: no such user, so every default
    compared = []
    for user_id in users:
        online = store.online_features(feast_store, user_id, items, query_category="books")
        offline_rows = pd.DataFrame(
            {
                schema.USER_ID: user_id,
                schema.ITEM_ID: items,
                schema.ITEM_CATEGORY: market["items"]
                .set_index(schema.ITEM_ID)
                .loc[items, "category"]
                .to_numpy(),
                schema.QUERY_CATEGORY: "books",
                schema.EVENT_TIMESTAMP: pd.Timestamp(end),
            }
        )
        offline = feast_store.get_historical_features(
            entity_df=offline_rows, features=feast_store.get_feature_service(RANKER_V1)
        ).to_df()
        offline = store.fill_defaults(offline.set_index(schema.ITEM_ID).loc[items].reset_index())
        columns = store.model_feature_columns(feast_store)
        assert "query_matches_category" in columns and "price_vs_user_usual" in columns
        pd.testing.assert_frame_equal(
            online[columns].reset_index(drop=True),
            offline[columns].reset_index(drop=True),
            check_exact=True,
        )
        compared.append(online)
    active, unknown = compared
    assert active["item_impressions_28d"].gt(0).all()
    assert active["user_clicks_28d"].gt(0).all()
    assert active["price_vs_user_usual"].ne(1.0).any()  # the user's usual price is known
    assert unknown["user_sessions_28d"].eq(0).all()
    assert unknown["price_vs_user_usual"].eq(1.0).all()


def test_rows_sharing_keys_and_time_are_all_returned(feast_store, market):
    """Two sessions in the same second showing the same item: the file store alone would keep
    one row (feast-dev/feast#6787)."""
    rows = entity_rows(market, 5)
    twice = pd.concat([rows, rows], ignore_index=True)
    features = historical_features(feast_store, twice)
    assert len(features) == 10
    columns = store.model_feature_columns(feast_store)
    pd.testing.assert_frame_equal(
        features[columns].iloc[:5], features[columns].iloc[5:].reset_index(drop=True)
    )


def test_duckdb_offline_store_returns_the_file_store_values(settings, market, feast_store):
    """The faster offline store (picked when feast[duckdb] is installed) joins the same values."""
    pytest.importorskip("duckdb")
    pytest.importorskip("ibis")
    rows = entity_rows(market, 400, seed=1)
    duckdb_store = store.feature_store(settings, offline_store="duckdb")
    columns = store.model_feature_columns(feast_store)
    pd.testing.assert_frame_equal(
        historical_features(duckdb_store, rows)[columns],
        historical_features(feast_store, rows)[columns],
    )


def test_training_set_splits_are_ordered_in_time_and_complete(settings, market, feast_store):
    training = build_training_set(settings, market, feast_store)
    frame = training.frame
    assert set(frame[schema.SPLIT]) == set(schema.SPLITS)
    last = {s: training.part(s)[schema.EVENT_TIMESTAMP].max() for s in schema.SPLITS}
    first = {s: training.part(s)[schema.EVENT_TIMESTAMP].min() for s in schema.SPLITS}
    assert last["train"].floor("D") < first["valid"].floor("D")
    assert last["valid"].floor("D") < first["test"].floor("D")
    assert frame.groupby(schema.SESSION_ID)[schema.SPLIT].nunique().max() == 1
    test_days = training.part("test")[schema.EVENT_TIMESTAMP].dt.floor("D").nunique()
    assert test_days == settings.split.test_days

    # rows of a session are contiguous, one per impression
    session_starts = frame[schema.SESSION_ID].ne(frame[schema.SESSION_ID].shift()).sum()
    assert session_starts == frame[schema.SESSION_ID].nunique()
    assert not frame.duplicated([schema.SESSION_ID, schema.ITEM_ID]).any()

    features = frame[training.feature_columns]
    assert not features.isna().any().any()
    assert all(dtype == np.float64 for dtype in features.dtypes)
    assert schema.POSITION not in training.feature_columns
    clicked = market["clicks"].groupby([schema.SESSION_ID, schema.ITEM_ID]).size()
    assert (
        frame[schema.CLICKED].sum()
        == frame.set_index([schema.SESSION_ID, schema.ITEM_ID]).index.isin(clicked.index).sum()
    )
    assert set(frame[schema.LABEL]) <= {0, 1, 2}
    assert set(frame[schema.USER_SEGMENT]) <= {"new", "returning"}

    splits = training.metadata["splits"]
    assert sum(s["rows"] for s in splits.values()) == len(frame)
    assert training.metadata["feature_service"] == RANKER_V1
    assert training.metadata["data_hash"].startswith("sha256:")

    save_training_set(training, settings)
    loaded = load_training_set(settings)
    pd.testing.assert_frame_equal(loaded.frame, frame)
    assert loaded.feature_columns == training.feature_columns
    assert loaded.metadata == training.metadata


def test_the_feast_cli_sees_the_applied_registry(settings, feast_store):
    config = yaml.safe_load((settings.feast_dir / "feature_store.yaml").read_text())
    assert config["online_store"]["path"] == str(settings.feast_dir / "online_store.db")
    from_yaml = FeatureStore(repo_path=str(settings.feast_dir))
    assert [s.name for s in from_yaml.list_feature_services()] == [RANKER_V1]


def test_services_profile_uses_redis_online(tmp_path):
    services = get_settings(state_dir=tmp_path, profile="services")
    config = store.config_dict(services)
    assert config["online_store"] == {
        "type": "redis",
        "connection_string": services.feast.redis_connection,
    }
    assert config["registry"]["path"] == str(tmp_path.resolve() / "feast" / "registry.db")


def test_applying_before_the_feature_tables_exist_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="feature tables not written yet"):
        store.apply_definitions(get_settings(state_dir=tmp_path))
    assert not (tmp_path / "feast").exists()
