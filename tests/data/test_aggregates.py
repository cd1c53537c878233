"""Point-in-time feature tables on hand-built events: what a snapshot may and may not see."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import aggregates
from features.aggregates import CTR_PRIOR_MEAN, UNKNOWN_PRICE, compute_feature_tables
from features.training_set import WARMUP, assign_splits
from ranklab.settings import DataSettings, SplitSettings
from simulation.generator import generate_marketplace

DAY0 = pd.Timestamp("2026-01-01", tz="UTC")


def at(day: float, hours: float = 0.0) -> pd.Timestamp:
    """A time ``day`` days and ``hours`` hours after DAY0."""
    return DAY0 + pd.Timedelta(days=day, hours=hours)


def tiny_marketplace() -> dict[str, pd.DataFrame]:
    """Two users, four items, two sessions, three clicks: every number below is by hand.

    user 1 (signed up long ago) searches on day 5 10:00, clicks items 10 (bought) and 11.
    user 2 signs up on day 3 12:00, searches on day 6 09:00 and clicks item 12.
    item 12 (toys) launches on day 4 06:00; item 13 (books) on day 10 12:00 and item 14 (toys)
    at day 8 00:00 sharp; neither is ever shown.
    """
    users = pd.DataFrame(
        {"user_id": [1, 2], "signup_ts": [pd.Timestamp("2025-06-01", tz="UTC"), at(3, 12)]}
    )
    long_ago = pd.Timestamp("2025-01-01", tz="UTC")
    items = pd.DataFrame(
        {
            "item_id": [10, 11, 12, 13, 14],
            "category": ["books", "books", "toys", "books", "toys"],
            "price": [10.0, 30.0, 100.0, 50.0, 20.0],
            "launch_ts": [long_ago, long_ago, at(4, 6), at(10, 12), at(8)],
        }
    )
    sessions = pd.DataFrame(
        {
            "session_id": [100, 101],
            "user_id": [1, 2],
            "ts": [at(5, 10), at(6, 9)],
            "device": ["mobile", "desktop"],
            "region": ["north", "south"],
            "query_category": ["books", "toys"],
        }
    )
    impressions = pd.DataFrame(
        {"session_id": [100, 100, 101, 101], "item_id": [10, 11, 12, 10], "position": [1, 2, 1, 2]}
    )
    clicks = pd.DataFrame(
        {
            "session_id": [100, 100, 101],
            "item_id": [10, 11, 12],
            "ts": [at(5, 10.01), at(5, 10.02), at(6, 9.01)],
            "purchased": [True, False, False],
        }
    )
    return {
        "users": users,
        "items": items,
        "sessions": sessions,
        "impressions": impressions,
        "clicks": clicks,
    }


DAYS = pd.date_range(DAY0, periods=40, freq="D")


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return compute_feature_tables(tiny_marketplace(), DAYS)


def row(table: pd.DataFrame, when: pd.Timestamp, **keys: object) -> pd.Series:
    """The one row of ``table`` for the entity ``keys`` stamped exactly ``when``."""
    match = table["event_timestamp"] == when
    for key, value in keys.items():
        match &= table[key] == value
    assert match.sum() == 1, f"expected one row for {keys} at {when}, found {match.sum()}"
    return table[match].iloc[0]


# ---- no leakage: a snapshot sees only events strictly before it ----
@pytest.mark.parametrize(
    ("day", "clicks_7d", "clicks_28d"),
    [
        (5, 0, 0),  # the click at day 5 10:00 is not in the day-5 snapshot...
        (6, 1, 1),  # ...it is from day 6 on
        (12, 1, 1),  # day 5 is still inside [day 5, day 12)
        (13, 0, 1),  # and drops out of the 7-day window exactly a week later
        (33, 0, 1),
        (34, 0, 0),  # and out of the 28-day window four weeks later
    ],
)
def test_a_click_counts_from_the_next_day_until_the_window_passes(
    tables, day, clicks_7d, clicks_28d
):
    snapshot = row(tables["item_stats"], at(day), item_id=10)
    assert snapshot["item_clicks_7d"] == clicks_7d
    assert snapshot["item_clicks_28d"] == clicks_28d


def test_a_session_joined_point_in_time_never_sees_its_own_clicks(tables):
    """Join each impression to the latest snapshot at or before its session, as Feast does."""
    market = tiny_marketplace()
    shown = market["impressions"].merge(market["sessions"], on="session_id")
    joined = pd.merge_asof(
        shown.sort_values("ts"),
        tables["item_stats"].sort_values("event_timestamp"),
        left_on="ts",
        right_on="event_timestamp",
        by="item_id",
        direction="backward",
    ).set_index(["session_id", "item_id"])
    assert joined.loc[(100, 10), "item_clicks_28d"] == 0  # clicked in this very session
    assert joined.loc[(101, 10), "item_clicks_28d"] == 1  # the day before: visible
    assert joined.loc[(101, 10), "item_impressions_28d"] == 1  # its own impression is not
    assert joined.loc[(101, 12), "item_impressions_28d"] == 0


def test_user_features_count_sessions_clicks_and_prices_before_the_snapshot(tables):
    on_day_6 = row(tables["user_stats"], at(6), user_id=1)
    assert on_day_6["user_sessions_28d"] == 1
    assert on_day_6["user_clicks_28d"] == 2
    assert on_day_6["user_mean_clicked_price_28d"] == pytest.approx(20.0)  # (10 + 30) / 2
    assert on_day_6["user_ctr_28d"] == pytest.approx((2 + 1) / (2 + 20))
    on_day_5 = row(tables["user_stats"], at(5), user_id=1)
    assert on_day_5["user_clicks_28d"] == 0
    assert on_day_5["user_mean_clicked_price_28d"] == UNKNOWN_PRICE


def test_category_affinity_is_the_click_share_of_the_window(tables):
    affinity = tables["user_category_affinity"]
    assert row(affinity, at(6), user_id=1, item_category="books")[
        "user_category_click_share_28d"
    ] == pytest.approx(1.0)
    assert row(affinity, at(6), user_id=1, item_category="toys")[
        "user_category_click_share_28d"
    ] == pytest.approx(0.0)
    assert row(affinity, at(6), user_id=2, item_category="toys")["user_category_clicks_28d"] == 0
    assert row(affinity, at(7), user_id=2, item_category="toys")["user_category_clicks_28d"] == 1
    # a share that falls to zero is written as zero, not left out (stale online otherwise)
    assert row(affinity, at(34), user_id=1, item_category="books")[
        "user_category_click_share_28d"
    ] == pytest.approx(0.0)


# ---- smoothing and cold starts ----
def test_ctr_is_smoothed_towards_the_prior(tables):
    shown_twice_clicked_once = row(tables["item_stats"], at(7), item_id=10)
    assert shown_twice_clicked_once["item_impressions_7d"] == 2
    assert shown_twice_clicked_once["item_ctr_7d"] == pytest.approx((1 + 1) / (2 + 20))
    never_shown = row(tables["item_stats"], at(3), item_id=11)
    assert never_shown["item_ctr_7d"] == pytest.approx(CTR_PRIOR_MEAN)
    assert never_shown["item_ctr_28d"] == pytest.approx(CTR_PRIOR_MEAN)


def test_a_cold_item_has_rows_only_from_its_launch(tables):
    rows = tables["item_stats"][tables["item_stats"]["item_id"] == 12]
    assert rows["event_timestamp"].min() == at(4, 6)  # the launch instant itself
    launch = row(tables["item_stats"], at(4, 6), item_id=12)
    assert launch["item_impressions_28d"] == 0
    assert launch["item_ctr_28d"] == pytest.approx(CTR_PRIOR_MEAN)
    assert launch["item_age_days"] == 0.0
    assert row(tables["item_stats"], at(5), item_id=12)["item_age_days"] == pytest.approx(0.75)
    # launched at a midnight: that snapshot is its first row, and only one row there
    assert row(tables["item_stats"], at(8), item_id=14)["item_age_days"] == 0.0
    assert tables["item_stats"].loc[
        tables["item_stats"]["item_id"] == 14, "event_timestamp"
    ].min() == at(8)


def test_a_new_user_has_rows_only_from_signup(tables):
    rows = tables["user_stats"][tables["user_stats"]["user_id"] == 2]
    assert rows["event_timestamp"].min() == at(3, 12)
    assert row(tables["user_stats"], at(6), user_id=2)["user_days_since_signup"] == 2.5
    affinity = tables["user_category_affinity"]
    assert affinity.loc[affinity["user_id"] == 2, "event_timestamp"].min() == at(3, 12)


def test_purchases_count_only_purchased_clicks(tables):
    assert row(tables["item_stats"], at(6), item_id=10)["item_purchases_28d"] == 1
    assert row(tables["item_stats"], at(6), item_id=11)["item_purchases_28d"] == 0


def test_price_is_compared_with_the_median_of_items_launched_by_then(tables):
    attributes = tables["item_attributes"]
    assert row(attributes, at(5), item_id=10)["item_price_vs_category_median"] == 0.5  # 10 / 20
    # item 13 launches on day 10 12:00: priced against the day-10 books median (20)...
    assert row(attributes, at(10, 12), item_id=13)["item_price_vs_category_median"] == 2.5
    # ...and from day 11 it is part of the median (10, 30, 50 -> 30)
    assert row(attributes, at(11), item_id=10)["item_price_vs_category_median"] == 10 / 30
    # the first item of a category is its own median
    assert row(attributes, at(4, 6), item_id=12)["item_price_vs_category_median"] == 1.0


# ---- the vectorised tables agree with the definition, on generated data ----
def test_window_sums_match_a_direct_count_on_generated_data():
    market = generate_marketplace(DataSettings(scale=0.05))
    item_stats = compute_feature_tables(market)["item_stats"]
    midnights = item_stats[item_stats["event_timestamp"].dt.hour == 0]
    sample = midnights.sample(200, random_state=0)
    clicks = market["clicks"]
    for _, snapshot in sample.iterrows():
        end = snapshot["event_timestamp"]
        for window in (7, 28):
            in_window = (
                (clicks["item_id"] == snapshot["item_id"])
                & (clicks["ts"] >= end - pd.Timedelta(days=window))
                & (clicks["ts"] < end)
            )
            assert snapshot[f"item_clicks_{window}d"] == in_window.sum()


def test_one_day_alone_gives_that_day_of_the_full_tables(tables):
    """What the traffic simulator does each simulated day: compute only today's snapshot."""
    for name, table in compute_feature_tables(
        tiny_marketplace(), pd.DatetimeIndex([at(7)])
    ).items():
        expected = tables[name][tables[name]["event_timestamp"] == at(7)]
        pd.testing.assert_frame_equal(table, expected.reset_index(drop=True))


def test_ground_truth_columns_are_never_read():
    plain = tiny_marketplace()
    with_truth = tiny_marketplace()
    rng = np.random.default_rng(0)
    with_truth["items"]["latent_quality"] = rng.normal(size=5)
    with_truth["users"]["latent_price_sensitivity"] = rng.normal(size=2)
    with_truth["impressions"]["true_utility"] = rng.normal(size=4)
    expected = compute_feature_tables(plain, DAYS)
    for name, table in compute_feature_tables(with_truth, DAYS).items():
        pd.testing.assert_frame_equal(table, expected[name])


# ---- bad input ----
def test_a_missing_column_is_named():
    market = tiny_marketplace()
    market["clicks"] = market["clicks"].drop(columns="purchased")
    with pytest.raises(ValueError, match=r"'clicks' lacks columns \['purchased'\]"):
        compute_feature_tables(market, DAYS)


def test_duplicate_item_ids_are_rejected():
    market = tiny_marketplace()
    market["items"].loc[3, "item_id"] = 10
    with pytest.raises(ValueError, match="'items' has duplicate item_id"):
        compute_feature_tables(market, DAYS)


def test_snapshot_days_must_be_utc_midnights():
    with pytest.raises(ValueError, match="midnights"):
        compute_feature_tables(tiny_marketplace(), DAYS + pd.Timedelta(hours=1))
    with pytest.raises(ValueError, match="tz-aware UTC"):
        compute_feature_tables(tiny_marketplace(), DAYS.tz_localize(None))


def test_default_days_run_from_the_first_session_to_the_day_after_the_last():
    days = aggregates.snapshot_days(tiny_marketplace())
    assert days[0] == at(5) and days[-1] == at(7)


# ---- the training set's time split (pure pandas, beside the tables it splits) ----
def test_split_by_day_drops_warmup_and_orders_train_valid_test():
    timestamps = pd.Series(pd.date_range(at(0, 10), periods=20, freq="D"))
    splits = assign_splits(timestamps, SplitSettings(warmup_days=2, valid_days=3, test_days=4))
    assert list(splits) == [WARMUP] * 2 + ["train"] * 11 + ["valid"] * 3 + ["test"] * 4


def test_a_split_without_training_days_is_rejected():
    timestamps = pd.Series(pd.date_range(at(0), periods=20, freq="D"))
    with pytest.raises(ValueError, match="split leaves no training days: 20 days of sessions"):
        assign_splits(timestamps, SplitSettings(warmup_days=7, valid_days=7, test_days=7))
