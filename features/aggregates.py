"""Trailing-window feature tables, strictly point-in-time (pure pandas; Feast only reads them).

Every table is a set of daily snapshots: a row per (entity, day ``D``) stamped ``D 00:00 UTC``
whose aggregates cover events in ``[D - w days, D)``, strictly before ``D``. Feast's
point-in-time join gives a session at time ``t`` the latest row at or before ``t``, so a
session never sees its own events or anything later: a click at day 5 10:00 first counts in
the day-6 snapshot.

How it is computed: events are summed per (entity, day) on a complete day grid, cumulated
along the days, and a window sum is the difference of two cumulative sums: a few numpy array
operations per table, whatever the number of days.

Which rows exist: every entity has a row every day from the moment it exists (an item from
its launch, a user and each of the user's (user, category) pairs from signup), plus a row at
that moment itself when it falls between two midnights, holding the empty history. Two
reasons. A value that falls to zero is written as zero, never left stale in the online store.
And Feast's file offline store drops an entity row outright (rather than returning nulls)
when the key has rows but none inside ``[t - TTL, t]``: a row at the start instant and then
every day guarantees there always is one.

Ground-truth columns (``latent_*``, ``true_*``) are never read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ranklab import schema
from ranklab.io import write_parquet
from ranklab.settings import Settings

ITEM_STATS = "item_stats"
ITEM_ATTRIBUTES = "item_attributes"
USER_STATS = "user_stats"
USER_CATEGORY_AFFINITY = "user_category_affinity"
FEATURE_TABLES = (ITEM_STATS, ITEM_ATTRIBUTES, USER_STATS, USER_CATEGORY_AFFINITY)

SHORT_WINDOW_DAYS = 7
LONG_WINDOW_DAYS = 28

# Smoothed CTR = (clicks + a) / (impressions + a + b), the posterior mean under a Beta(a, b)
# prior. Without it a cold item is 0/0, and an item with one lucky click out of one impression
# reads 100% and outranks everything. Beta(1, 19) has mean 5%, about the generated log's CTR,
# and weighs as much as 20 impressions, so an item needs a few dozen impressions before its
# own clicks dominate. A cold item reads exactly the prior mean.
CTR_PRIOR_CLICKS = 1.0
CTR_PRIOR_NON_CLICKS = 19.0
CTR_PRIOR_MEAN = CTR_PRIOR_CLICKS / (CTR_PRIOR_CLICKS + CTR_PRIOR_NON_CLICKS)

# Mean price of the items a user clicked, when the user clicked nothing in the window. Zero
# reads "unknown", never a real price; the on-demand feature price_vs_user_usual maps it to 1.0.
UNKNOWN_PRICE = 0.0

NANOSECONDS_PER_DAY = 86_400 * 10**9


# ---- the day grid ----
def snapshot_days(tables: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """Every day from the first session's day to the day after the last session, UTC midnights.

    The last snapshot covers the whole final day, so materializing at its timestamp puts
    everything logged into the online store.
    """
    session_ts = _utc(tables["sessions"]["ts"])
    if session_ts.empty:
        raise ValueError("sessions table is empty: no days to snapshot")
    first, last = session_ts.min().floor("D"), session_ts.max().floor("D")
    return pd.date_range(first, last + pd.Timedelta(days=1), freq="D")


class _DayGrid:
    """Event days and snapshot days on one grid that starts a long window before the first
    snapshot, so every window of every snapshot lies inside it and none needs clipping."""

    def __init__(self, days: pd.DatetimeIndex) -> None:
        self.days = _check_days(days)
        self.origin = self.days[0] - pd.Timedelta(days=LONG_WINDOW_DAYS)
        self.size = (self.days[-1] - self.origin).days  # events from the last snapshot on: unused
        self.snapshot_pos = np.asarray((self.days - self.origin).days)

    def daily_sums(
        self, entity: np.ndarray, ts: pd.Series, n_entities: int, weights: pd.Series | None = None
    ) -> np.ndarray:
        """(entities, grid days): per entity code and event day, the sum of ``weights`` (or the
        count of events). Codes of -1 (unknown entities) and days off the grid are dropped."""
        day = np.asarray((_utc(ts).dt.floor("D") - self.origin).dt.days)
        keep = (entity >= 0) & (day >= 0) & (day < self.size)
        w = None if weights is None else weights.to_numpy(dtype=float)[keep]
        sums = np.bincount(entity[keep] * self.size + day[keep], w, n_entities * self.size)
        return sums.reshape(n_entities, self.size)

    def trailing(self, daily: np.ndarray, window: int) -> np.ndarray:
        """(entities, snapshots): the sum over grid days ``[D - window, D)`` for each snapshot D."""
        cumulative = np.zeros((daily.shape[0], daily.shape[1] + 1))
        np.cumsum(daily, axis=1, out=cumulative[:, 1:])  # cumulative[:, k] = sum of days < k
        return cumulative[:, self.snapshot_pos] - cumulative[:, self.snapshot_pos - window]

    def rows_from_start(
        self,
        per_entity: Mapping[str, np.ndarray],
        start: pd.Series,
        values: Mapping[str, np.ndarray],
        empty: Mapping[str, float],
    ) -> pd.DataFrame:
        """Rows from (entities, snapshots) matrices: the snapshots at or after each entity's
        ``start``, plus a row at ``start`` itself holding ``empty`` when it falls between two
        snapshots. ``per_entity`` holds the keys (first) and other columns constant per entity.
        Integer matrices become Int64 features, float ones Float64."""
        n_entities = len(start)
        frame = pd.DataFrame({k: np.repeat(v, len(self.days)) for k, v in per_entity.items()})
        frame[schema.EVENT_TIMESTAMP] = _timestamps(np.tile(self.days.asi8, n_entities))
        for name, matrix in values.items():
            frame[name] = matrix.reshape(-1)
        start_ns = _nanoseconds(start)
        frame = frame[(self.days.asi8[None, :] >= start_ns[:, None]).reshape(-1)]

        between = (start_ns > self.days.asi8[0]) & (start_ns < self.days.asi8[-1])
        between &= start_ns % NANOSECONDS_PER_DAY != 0  # a midnight start has its daily row
        first = pd.DataFrame({k: np.asarray(v)[between] for k, v in per_entity.items()})
        first[schema.EVENT_TIMESTAMP] = _timestamps(start_ns[between])
        for name, value in empty.items():
            first[name] = np.full(len(first), value, dtype=frame[name].dtype)
        return _sorted(pd.concat([frame, first], ignore_index=True), list(per_entity))


def _check_days(days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    days = pd.DatetimeIndex(days)
    if len(days) == 0:
        raise ValueError("snapshot days are empty")
    if days.tz is None or str(days.tz) != "UTC":
        raise ValueError(f"snapshot days must be tz-aware UTC, got tz={days.tz}")
    if not (days == days.floor("D")).all():
        raise ValueError("snapshot days must be midnights (00:00 UTC)")
    if not days.is_monotonic_increasing or days.has_duplicates:
        raise ValueError("snapshot days must be strictly increasing")
    return days.as_unit("ns")


def smoothed_ctr(clicks: np.ndarray, impressions: np.ndarray) -> np.ndarray:
    """Posterior-mean CTR under the Beta(CTR_PRIOR_CLICKS, CTR_PRIOR_NON_CLICKS) prior."""
    return (clicks + CTR_PRIOR_CLICKS) / (impressions + CTR_PRIOR_CLICKS + CTR_PRIOR_NON_CLICKS)


# ---- the tables ----
def compute_item_stats(tables: Mapping[str, pd.DataFrame], days: pd.DatetimeIndex) -> pd.DataFrame:
    """Per item and day: impressions, clicks and smoothed CTR over 7 and 28 days, purchases over
    28 days (popularity), and days since launch. Rows start at launch."""
    grid = _DayGrid(days)
    items = tables["items"]
    n = len(items)
    shown = _impressions_with_context(tables)
    clicks = tables["clicks"]
    shown_codes = _codes(shown[schema.ITEM_ID], items[schema.ITEM_ID])
    click_codes = _codes(clicks[schema.ITEM_ID], items[schema.ITEM_ID])
    daily_impressions = grid.daily_sums(shown_codes, shown["ts"], n)
    daily_clicks = grid.daily_sums(click_codes, clicks["ts"], n)
    daily_purchases = grid.daily_sums(click_codes, clicks["ts"], n, clicks["purchased"])

    values: dict[str, np.ndarray] = {}
    for window in (SHORT_WINDOW_DAYS, LONG_WINDOW_DAYS):
        impressions = grid.trailing(daily_impressions, window)
        clicked = grid.trailing(daily_clicks, window)
        values[f"item_impressions_{window}d"] = _counts(impressions)
        values[f"item_clicks_{window}d"] = _counts(clicked)
        values[f"item_ctr_{window}d"] = smoothed_ctr(clicked, impressions)
    purchases = grid.trailing(daily_purchases, LONG_WINDOW_DAYS)
    values[f"item_purchases_{LONG_WINDOW_DAYS}d"] = _counts(purchases)
    values["item_age_days"] = _days_since(grid.days, items["launch_ts"])
    return grid.rows_from_start(
        {schema.ITEM_ID: items[schema.ITEM_ID].to_numpy()},
        items["launch_ts"],
        values,
        empty={**_no_events(values), "item_age_days": 0.0},
    )


def compute_item_attributes(
    tables: Mapping[str, pd.DataFrame], days: pd.DatetimeIndex
) -> pd.DataFrame:
    """Per item and day: category, price, and price over the median price of the items of its
    category launched by then (an item launched later never moves an earlier value). The row
    at the launch instant uses the median of the snapshot before (1.0 for a category's first)."""
    grid = _DayGrid(days)
    items = tables["items"]
    frame = grid.rows_from_start(
        {
            schema.ITEM_ID: items[schema.ITEM_ID].to_numpy(),
            "category": items["category"].to_numpy(),
            "item_price": items["price"].to_numpy(dtype=float),
        },
        items["launch_ts"],
        values={},
        empty={},
    )
    at_midnight = frame[schema.EVENT_TIMESTAMP] == frame[schema.EVENT_TIMESTAMP].dt.floor("D")
    median = frame[at_midnight].groupby(["category", schema.EVENT_TIMESTAMP])["item_price"].median()
    snapshot_before = pd.MultiIndex.from_arrays(
        [frame["category"], frame[schema.EVENT_TIMESTAMP].dt.floor("D")]
    )
    reference = median.reindex(snapshot_before).to_numpy()
    frame["item_price_vs_category_median"] = np.where(
        np.isnan(reference), 1.0, frame["item_price"].to_numpy() / reference
    )
    return frame


def compute_user_stats(tables: Mapping[str, pd.DataFrame], days: pd.DatetimeIndex) -> pd.DataFrame:
    """Per user and day, over 28 days: sessions, clicks, smoothed CTR, mean price of the clicked
    items (UNKNOWN_PRICE without clicks); and days since signup. Rows start at signup."""
    grid = _DayGrid(days)
    users = tables["users"]
    n = len(users)
    sessions = tables["sessions"]
    shown = _impressions_with_context(tables)
    clicks = _clicks_with_context(tables)

    def trailing(events: pd.DataFrame, weights: pd.Series | None = None) -> np.ndarray:
        codes = _codes(events[schema.USER_ID], users[schema.USER_ID])
        return grid.trailing(grid.daily_sums(codes, events["ts"], n, weights), LONG_WINDOW_DAYS)

    clicked = trailing(clicks)
    clicked_price = trailing(clicks, clicks["price"])
    mean_price = np.divide(
        clicked_price, clicked, out=np.full_like(clicked, UNKNOWN_PRICE), where=clicked > 0
    )
    window = LONG_WINDOW_DAYS
    values = {
        f"user_sessions_{window}d": _counts(trailing(sessions)),
        f"user_clicks_{window}d": _counts(clicked),
        f"user_ctr_{window}d": smoothed_ctr(clicked, trailing(shown)),
        f"user_mean_clicked_price_{window}d": mean_price,
        "user_days_since_signup": _days_since(grid.days, users["signup_ts"]),
    }
    return grid.rows_from_start(
        {schema.USER_ID: users[schema.USER_ID].to_numpy()},
        users["signup_ts"],
        values,
        empty={
            **_no_events(values),
            f"user_mean_clicked_price_{window}d": UNKNOWN_PRICE,
            "user_days_since_signup": 0.0,
        },
    )


def compute_user_category_affinity(
    tables: Mapping[str, pd.DataFrame], days: pd.DatetimeIndex
) -> pd.DataFrame:
    """Per (user, category) and day: the user's clicks in the category over 28 days and their
    share of all the user's clicks then (0 when the user clicked nothing). Every category of
    the catalogue, for every user, from signup."""
    grid = _DayGrid(days)
    users = tables["users"]
    categories = pd.Index(sorted(tables["items"]["category"].unique()))
    n_users, n_categories = len(users), len(categories)
    clicks = _clicks_with_context(tables)
    # a (user, category) pair is entity user_code * n_categories + category_code
    pair = _codes(clicks[schema.USER_ID], users[schema.USER_ID]) * n_categories
    pair += categories.get_indexer(clicks["category"])
    daily = grid.daily_sums(pair, clicks["ts"], n_users * n_categories)

    window = LONG_WINDOW_DAYS
    in_category = grid.trailing(daily, window)  # (users * categories, snapshots)
    per_user = in_category.reshape(n_users, n_categories, -1).sum(axis=1)
    all_categories = np.repeat(per_user, n_categories, axis=0)  # aligned with in_category
    share = np.divide(
        in_category, all_categories, out=np.zeros_like(in_category), where=all_categories > 0
    )
    values = {
        f"user_category_clicks_{window}d": _counts(in_category),
        f"user_category_click_share_{window}d": share,
    }
    return grid.rows_from_start(
        {
            schema.USER_ID: np.repeat(users[schema.USER_ID].to_numpy(), n_categories),
            schema.ITEM_CATEGORY: np.tile(categories.to_numpy(), n_users),
        },
        users["signup_ts"].repeat(n_categories),
        values,
        empty={**_no_events(values), f"user_category_click_share_{window}d": 0.0},
    )


COMPUTE = {
    ITEM_STATS: compute_item_stats,
    ITEM_ATTRIBUTES: compute_item_attributes,
    USER_STATS: compute_user_stats,
    USER_CATEGORY_AFFINITY: compute_user_category_affinity,
}


def compute_feature_tables(
    tables: Mapping[str, pd.DataFrame], days: pd.DatetimeIndex | None = None
) -> dict[str, pd.DataFrame]:
    """All feature tables over ``days`` (default: ``snapshot_days(tables)``)."""
    check_raw_tables(tables)
    days = snapshot_days(tables) if days is None else days
    return {name: compute(tables, days) for name, compute in COMPUTE.items()}


def feature_table_path(settings: Settings, name: str) -> Path:
    """Where a feature table's parquet lives: Feast's FileSources point here."""
    if name not in FEATURE_TABLES:
        raise ValueError(f"unknown feature table {name!r}; expected one of {FEATURE_TABLES}")
    return settings.feature_dir / f"{name}.parquet"


def write_feature_tables(
    feature_tables: Mapping[str, pd.DataFrame], settings: Settings
) -> dict[str, Path]:
    """Write every table atomically (a reader sees the old file or the new, never half)."""
    missing = [name for name in FEATURE_TABLES if name not in feature_tables]
    if missing:
        raise ValueError(f"feature tables missing {missing}; expected all of {FEATURE_TABLES}")
    return {
        name: write_parquet(feature_tables[name], feature_table_path(settings, name))
        for name in FEATURE_TABLES
    }


# ---- input checks ----
REQUIRED_COLUMNS = {
    "users": (schema.USER_ID, "signup_ts"),
    "items": (schema.ITEM_ID, "category", "price", "launch_ts"),
    "sessions": (schema.SESSION_ID, schema.USER_ID, "ts"),
    "impressions": (schema.SESSION_ID, schema.ITEM_ID),
    "clicks": (schema.SESSION_ID, schema.ITEM_ID, "ts", "purchased"),
}
UNIQUE_KEYS = {"users": schema.USER_ID, "items": schema.ITEM_ID, "sessions": schema.SESSION_ID}


def check_raw_tables(tables: Mapping[str, pd.DataFrame]) -> None:
    """Fail before any work when a table or column the features read is absent, or a key repeats."""
    missing_tables = [name for name in REQUIRED_COLUMNS if name not in tables]
    if missing_tables:
        raise ValueError(f"raw tables missing {missing_tables}; got {sorted(tables)}")
    for name, columns in REQUIRED_COLUMNS.items():
        absent = [c for c in columns if c not in tables[name].columns]
        if absent:
            raise ValueError(f"raw table {name!r} lacks columns {absent}")
    for name, key in UNIQUE_KEYS.items():
        if tables[name][key].duplicated().any():
            raise ValueError(f"raw table {name!r} has duplicate {key} values")


# ---- helpers ----
def _impressions_with_context(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Impressions with their session's time and user: an impression happens when shown."""
    sessions = tables["sessions"][[schema.SESSION_ID, schema.USER_ID, "ts"]]
    impressions = tables["impressions"][[schema.SESSION_ID, schema.ITEM_ID]]
    return impressions.merge(sessions, on=schema.SESSION_ID, validate="many_to_one")


def _clicks_with_context(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Clicks with the clicking user and the clicked item's category and price.

    A click counts at its own timestamp, when it became known, not at the session's start.
    """
    clicks = tables["clicks"][[schema.SESSION_ID, schema.ITEM_ID, "ts", "purchased"]]
    users = tables["sessions"][[schema.SESSION_ID, schema.USER_ID]]
    items = tables["items"][[schema.ITEM_ID, "category", "price"]]
    return clicks.merge(users, on=schema.SESSION_ID, validate="many_to_one").merge(
        items, on=schema.ITEM_ID, validate="many_to_one"
    )


def _no_events(values: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Values before any event: every count 0 and every CTR the prior mean."""
    empty: dict[str, float] = {n: 0 for n, v in values.items() if v.dtype.kind == "i"}
    empty.update({n: CTR_PRIOR_MEAN for n in values if "_ctr_" in n})
    return empty


def _codes(values: pd.Series, ids: pd.Series) -> np.ndarray:
    """Row index of each value in ``ids``; -1 for values not in it (dropped by daily_sums)."""
    return pd.Index(ids).get_indexer(values)


def _counts(sums: np.ndarray) -> np.ndarray:
    """Window sums of whole events, as integers (stored as Feast Int64)."""
    return np.rint(sums).astype("int64")


def _days_since(days: pd.DatetimeIndex, since: pd.Series) -> np.ndarray:
    """(entities, snapshots): fractional days from each entity's start to each snapshot."""
    return (days.asi8[None, :] - _nanoseconds(since)[:, None]) / NANOSECONDS_PER_DAY


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def _nanoseconds(values: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch (fast to compare and subtract)."""
    return pd.DatetimeIndex(_utc(values)).as_unit("ns").asi8


def _timestamps(nanoseconds: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(nanoseconds.astype("datetime64[ns]")).tz_localize("UTC")


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values([*keys, schema.EVENT_TIMESTAMP], kind="stable", ignore_index=True)
