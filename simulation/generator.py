"""A deterministic marketplace: users, items, search sessions and the logs they leave.

The generator knows the truth (every impression's utility, from ``simulation/click_model.py``),
so every model can be compared with the best possible ranking. The logs are produced the way
real logs are: a *logging policy* (a noisy production ranker that knows item quality but not
personal taste) orders each slate, and users click under position bias. A model trained on
these clicks therefore learns from biased, incomplete feedback, as it would in production.

What makes slices differ in difficulty:
- device: phones examine fewer positions (steeper examination curve), so fewer clicks;
- region: each region has its own share of utility that no feature explains;
- new vs returning users: users who sign up during the window have no history yet;
- query category: taste matters more in some categories (books) than others (grocery).

One call of ``generate_marketplace`` with the same ``DataSettings`` gives identical tables.
Every stage draws from its own child of ``np.random.default_rng(seed)``, so changing how
clicks are drawn does not reshuffle the users.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ranklab.schema import (
    DEVICE,
    ITEM_ID,
    POLICY_POSITION,
    POSITION,
    PURCHASED,
    QUERY_CATEGORY,
    RANDOMIZED,
    RAW_TABLES,
    REGION,
    SESSION_ID,
    USER_ID,
)
from ranklab.settings import DataSettings
from simulation.click_model import (
    CATEGORIES,
    DEVICES,
    EMBEDDING_COLUMNS,
    MEDIAN_PRICE,
    PRICE_SENSITIVITY,
    QUALITY,
    REGIONS,
    TASTE_COLUMNS,
    TASTE_DIM,
    ClickModel,
)
from simulation.truth import EXPECTED_UTILITY, TRUE_RELEVANCE, TRUE_UTILITY

# ---- the knobs of the simulated world (the click model holds the users' behaviour) ----
REGION_SHARE = (0.30, 0.25, 0.20, 0.15, 0.10)  # of users, in REGIONS order
DEVICE_SHARE = (0.55, 0.35, 0.10)  # users' preferred device, in DEVICES order
CATEGORY_SHARE = (0.16, 0.18, 0.12, 0.10, 0.10, 0.14, 0.10, 0.10)  # of items and of queries
BRANDS_PER_CATEGORY = 6
COLD_START_SHARE = 0.15  # users who sign up, and items that launch, inside the window
HISTORY_DAYS = 730  # how far before the window the other users signed up / items launched
PREFERRED_DEVICE_SHARE = 0.8  # sessions on the user's preferred device
HOME_CATEGORY_SHARE = 0.6  # sessions that search the user's favourite category
IN_CATEGORY_SHARE = 0.8  # candidates that retrieval takes from the query category
LOGGING_NOISE_SD = 1.0  # how far the production ranker's score strays from quality + match
# The old ranker was tuned for revenue: it lifts dearer items (per unit of log price against
# the category median), which users do not value (the utility's price term is a penalty).
# A model fitted naively to its clicks learns "dear is good", because dear items were shown
# on top and clicked there; the lesson of position debiasing (models/README.md).
LOGGING_PRICE_BOOST = 1.5
WEEKEND_LIFT = 1.25  # more sessions on Saturdays and Sundays
_RETRIEVAL_CHUNK_CELLS = 2_000_000  # sessions x items scored at once: bounds memory


def window(data: DataSettings) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the logged sessions, UTC. Every generated event lies before ``end``,
    so ``end`` is the natural "now" for validating and splitting the generated data."""
    start = pd.Timestamp(data.start_date, tz="UTC")
    return start, start + pd.Timedelta(days=data.n_days)


def scaled_sizes(data: DataSettings) -> dict[str, int]:
    """Users, items and sessions at ``data.scale`` (at least one of each)."""
    return {
        "users": max(1, round(data.n_users * data.scale)),
        "items": max(1, round(data.n_items * data.scale)),
        "sessions": max(1, round(data.sessions_per_day * data.scale * data.n_days)),
    }


def generate_marketplace(
    data: DataSettings, click_model: ClickModel | None = None
) -> dict[str, pd.DataFrame]:
    """The five raw tables of ``ranklab.schema.RAW_TABLES``, deterministic from ``data.seed``."""
    if data.slate_min > data.slate_max:
        raise ValueError(f"slate_min ({data.slate_min}) exceeds slate_max ({data.slate_max})")
    click_model = click_model or ClickModel()
    sizes = scaled_sizes(data)
    start, end = window(data)
    # One child stream per stage; spawning a sixth kept the first five's draws unchanged.
    rngs = np.random.default_rng(data.seed).spawn(6)

    users = _users(sizes["users"], start, end, rngs[0])
    items = _items(sizes["items"], start, end, rngs[1])
    sessions = draw_sessions(users, sizes["sessions"], start, data.n_days, rngs[2])
    shown = _impressions(sessions, users, items, data, click_model, rngs[3])
    shown = randomize_top_k(
        shown, data.logging_randomized_share, data.logging_randomized_top_k, rngs[5]
    )
    clicks = draw_clicks(shown, sessions, click_model, end, rngs[4])
    impressions = shown[
        [
            SESSION_ID,
            ITEM_ID,
            POSITION,
            RANDOMIZED,
            POLICY_POSITION,
            TRUE_UTILITY,
            TRUE_RELEVANCE,
            EXPECTED_UTILITY,
        ]
    ]
    return {
        "users": users,
        "items": items,
        "sessions": sessions,
        "impressions": impressions,
        "clicks": clicks,
    }


# ---- entities ----
def _arrival_times(
    n: int, start: pd.Timestamp, end: pd.Timestamp, rng: np.random.Generator
) -> pd.Series:
    """Signup or launch times: most long before the window, ``COLD_START_SHARE`` inside it."""
    in_window = rng.random(n) < COLD_START_SHARE
    window_s = (end - start).total_seconds()
    offset_s = np.where(
        in_window,
        rng.uniform(0, window_s, n),
        -rng.uniform(0, HISTORY_DAYS * 86_400, n),
    )
    return pd.Series(start + pd.to_timedelta(np.round(offset_s), unit="s"))


def _users(
    n: int, start: pd.Timestamp, end: pd.Timestamp, rng: np.random.Generator
) -> pd.DataFrame:
    """Users with a region, a preferred device, a favourite category and latent tastes."""
    users = pd.DataFrame(
        {
            USER_ID: np.arange(n, dtype=np.int64),
            REGION: rng.choice(REGIONS, size=n, p=REGION_SHARE),
            "preferred_device": rng.choice(DEVICES, size=n, p=DEVICE_SHARE),
            "signup_ts": _arrival_times(n, start, end, rng),
            # Heavy-tailed: a few users make many of the sessions, as in real logs.
            "latent_activity": rng.lognormal(0.0, 1.0, n),
            PRICE_SENSITIVITY: rng.lognormal(-0.2, 0.5, n),
            "latent_home_category": rng.choice(CATEGORIES, size=n, p=CATEGORY_SHARE),
        }
    )
    taste = pd.DataFrame(rng.standard_normal((n, TASTE_DIM)), columns=list(TASTE_COLUMNS))
    return pd.concat([users, taste], axis=1)


def _items(
    n: int, start: pd.Timestamp, end: pd.Timestamp, rng: np.random.Generator
) -> pd.DataFrame:
    """Items with a brand, a log-normal price around their category's median, and a quality.

    Quality is partly the brand's and partly higher for dearer items, so brand and price are
    informative features, and price-sensitive users face a real trade-off.
    """
    category = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_SHARE)
    brand = rng.integers(0, BRANDS_PER_CATEGORY, n)
    brand_quality = rng.normal(0.0, 0.5, (len(CATEGORIES), BRANDS_PER_CATEGORY))
    log_ratio = rng.normal(0.0, 0.6, n)  # log(price / category median)
    median = np.array([MEDIAN_PRICE[c] for c in CATEGORIES])[category]
    items = pd.DataFrame(
        {
            ITEM_ID: np.arange(n, dtype=np.int64),
            "category": np.asarray(CATEGORIES)[category],
            "brand": [f"{CATEGORIES[c]}-brand-{b}" for c, b in zip(category, brand, strict=True)],
            "price": np.round(median * np.exp(log_ratio), 2).clip(min=0.01),
            "launch_ts": _arrival_times(n, start, end, rng),
            QUALITY: brand_quality[category, brand] + 0.4 * log_ratio + rng.normal(0, 0.8, n),
        }
    )
    embedding = rng.standard_normal((n, TASTE_DIM))
    return pd.concat([items, pd.DataFrame(embedding, columns=list(EMBEDDING_COLUMNS))], axis=1)


def _epoch_ns(timestamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch: tz-aware columns become object arrays in ``to_numpy``,
    which would make every comparison a Python call."""
    return pd.DatetimeIndex(timestamps).as_unit("ns").asi8


# ---- sessions ----
def _session_times(
    n: int, start: pd.Timestamp, n_days: int, rng: np.random.Generator
) -> pd.DatetimeIndex:
    """Sorted session timestamps: busier weekends, and evenings busier than nights."""
    weekday = (start.dayofweek + np.arange(n_days)) % 7
    day_weight = np.where(weekday >= 5, WEEKEND_LIFT, 1.0)
    day = rng.choice(n_days, size=n, p=day_weight / day_weight.sum())
    hours = np.arange(24)
    hour_weight = (
        0.2 + np.exp(-(((hours - 20) / 3.0) ** 2)) + 0.5 * np.exp(-(((hours - 12) / 2.0) ** 2))
    )
    hour = rng.choice(24, size=n, p=hour_weight / hour_weight.sum())
    seconds = np.sort(day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n))
    return start + pd.to_timedelta(seconds, unit="s")


def draw_sessions(
    users: pd.DataFrame, n: int, start: pd.Timestamp, n_days: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Sessions in time order: who searches, when, on which device, for which category.
    Ids are row numbers from 0. Public: the traffic simulator draws more of the same world."""
    ts = _session_times(n, start, n_days, rng)
    user = _active_users(users, ts, rng)
    preferred = users["preferred_device"].to_numpy()[user]
    device = np.where(rng.random(n) < PREFERRED_DEVICE_SHARE, preferred, rng.choice(DEVICES, n))
    home = users["latent_home_category"].to_numpy()[user]
    other = rng.choice(CATEGORIES, size=n, p=CATEGORY_SHARE)
    return pd.DataFrame(
        {
            SESSION_ID: np.arange(n, dtype=np.int64),
            USER_ID: users[USER_ID].to_numpy()[user],
            "ts": ts,
            DEVICE: device,
            REGION: users[REGION].to_numpy()[user],
            QUERY_CATEGORY: np.where(rng.random(n) < HOME_CATEGORY_SHARE, home, other),
        }
    )


def _active_users(
    users: pd.DataFrame, ts: pd.DatetimeIndex, rng: np.random.Generator
) -> np.ndarray:
    """Row index of the user of each session, drawn by activity among users signed up by then.

    Rejection sampling: draw from all users, redraw those who had not signed up yet. This is
    exactly the activity-weighted draw among eligible users, and it ends quickly because most
    users signed up before the window.
    """
    p = users["latent_activity"].to_numpy() / users["latent_activity"].sum()
    signup = _epoch_ns(users["signup_ts"])
    ts = _epoch_ns(ts)
    if signup.min() > ts.min():
        raise ValueError("no user has signed up by the first session; raise n_users or scale")
    user = rng.choice(len(users), size=len(ts), p=p)
    pending = signup[user] > ts
    while pending.any():
        user[pending] = rng.choice(len(users), size=int(pending.sum()), p=p)
        pending = signup[user] > ts
    return user


# ---- slates: retrieval, then the logging policy's order ----
def _impressions(
    sessions: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    data: DataSettings,
    click_model: ClickModel,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One row per shown item with its logged position and its true utility and grade.

    Keeps the session's device as a helper column for the click draw.
    """
    session_row, item_row = draw_candidates(sessions, items, data, rng)
    # One row per impression of only the columns the truth reads: at scale 10 these frames
    # have 1.5 million rows. Ids are row numbers here, so ids index rows directly.
    context = sessions.iloc[session_row].reset_index(drop=True)
    item_truth = items[[QUALITY, *EMBEDDING_COLUMNS, "category", "price"]]
    shown_items = item_truth.iloc[item_row].reset_index(drop=True)
    user_truth = users[[PRICE_SENSITIVITY, *TASTE_COLUMNS]]
    shown_users = user_truth.iloc[context[USER_ID].to_numpy()].reset_index(drop=True)
    utility = click_model.true_utility(shown_users, shown_items, context, rng)
    expected = click_model.true_utility(shown_users, shown_items, context)

    # The logging policy orders each slate; position = rank within the session, from 1.
    score = _logging_score(shown_items, context, click_model, rng)
    order = np.lexsort((-score, session_row))
    session_row, item_row = session_row[order], item_row[order]
    utility, expected = utility[order], expected[order]
    first_row = np.searchsorted(session_row, session_row, side="left")
    return pd.DataFrame(
        {
            SESSION_ID: sessions[SESSION_ID].to_numpy()[session_row],
            ITEM_ID: items[ITEM_ID].to_numpy()[item_row],
            POSITION: (np.arange(len(order)) - first_row + 1).astype(np.int64),
            TRUE_UTILITY: utility,
            TRUE_RELEVANCE: click_model.relevance_grade(utility),
            EXPECTED_UTILITY: expected,
            DEVICE: sessions[DEVICE].to_numpy()[session_row],
        }
    )


def randomize_top_k(
    shown: pd.DataFrame, share: float, top_k: int, rng: np.random.Generator
) -> pd.DataFrame:
    """The old service's randomisation intervention, as the service itself runs it
    (``serving/randomization.py``): in a ``share`` of sessions the policy's top ``top_k``
    items are shown in a uniformly random order. Adds ``policy_position`` (the policy's own
    rank) and ``randomized`` (this row's position was drawn at random); ``shown`` is grouped
    by session with ``position`` the policy's rank."""
    shown = shown.copy()
    shown[POLICY_POSITION] = shown[POSITION].to_numpy()
    session_codes, _ = pd.factorize(shown[SESSION_ID])
    chosen = rng.random(session_codes.max() + 1) < share
    in_top = shown[POSITION].to_numpy() <= top_k
    randomized = chosen[session_codes] & in_top
    # A uniform shuffle of each chosen session's top rows: rank them by a random key.
    key = rng.random(len(shown))
    rows = np.flatnonzero(randomized)
    order = rows[np.lexsort((key[rows], session_codes[rows]))]
    first = np.searchsorted(session_codes[order], session_codes[order], side="left")
    position = shown[POSITION].to_numpy().copy()
    position[order] = np.arange(len(order)) - first + 1
    shown[POSITION] = position.astype(np.int64)
    shown[RANDOMIZED] = randomized
    return shown.sort_values([SESSION_ID, POSITION], kind="stable", ignore_index=True)


def _logging_score(
    shown_items: pd.DataFrame,
    context: pd.DataFrame,
    click_model: ClickModel,
    rng: np.random.Generator,
) -> np.ndarray:
    """The production ranker that logged the data: quality, query match and price, plus noise.

    It knows neither taste nor price sensitivity, it is noisy, and it favours dearer items
    (``LOGGING_PRICE_BOOST``), so logged positions follow utility only loosely and are biased
    towards something users do not want: the gap a learned ranker can close, and the trap a
    naively learned one falls into.
    """
    match = shown_items["category"].to_numpy() == context[QUERY_CATEGORY].to_numpy()
    median = shown_items["category"].map(MEDIAN_PRICE).to_numpy(dtype=float)
    log_price_ratio = np.log(shown_items["price"].to_numpy(dtype=float) / median)
    return (
        shown_items[QUALITY].to_numpy()
        + click_model.category_match_bonus * match
        + LOGGING_PRICE_BOOST * log_price_ratio
        + rng.normal(0.0, LOGGING_NOISE_SD, len(match))
    )


def draw_candidates(
    sessions: pd.DataFrame, items: pd.DataFrame, data: DataSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate slates: (session row, item row) pairs, grouped by session, no repeats.

    Each session gets K ~ U[slate_min, slate_max] items launched before it (fewer only if the
    catalogue has fewer), drawn without replacement so that ``IN_CATEGORY_SHARE`` of draws
    come from the query category. Weighted sampling without replacement by exponential race:
    the K smallest of ``Exp(1) / weight`` win; an item not launched yet gets an infinite key.
    Sessions are scored in chunks so memory stays bounded at any scale.
    """
    inverse_weight = _inverse_retrieval_weights(items["category"])
    query = pd.Index(CATEGORIES).get_indexer(sessions[QUERY_CATEGORY])
    launch, ts = _epoch_ns(items["launch_ts"]), _epoch_ns(sessions["ts"])
    slate_size = rng.integers(data.slate_min, data.slate_max + 1, len(sessions))
    chunk = max(1, _RETRIEVAL_CHUNK_CELLS // len(items))
    session_rows, item_rows = [], []
    for lo in range(0, len(sessions), chunk):
        rows = np.arange(lo, min(lo + chunk, len(sessions)))
        key = rng.standard_exponential((len(rows), len(items)), dtype=np.float32)
        key *= inverse_weight[query[rows]]
        # Sessions are in time order, so only items launching after the chunk's first
        # session can be unlaunched for some of its sessions: only those columns are masked.
        late = np.flatnonzero(launch > ts[rows[0]])
        late_keys = key[:, late]
        late_keys[launch[late][None, :] > ts[rows, None]] = np.inf
        key[:, late] = late_keys
        row, item = _smallest_keys(key, slate_size[rows])
        session_rows.append(rows[row])
        item_rows.append(item)
    return np.concatenate(session_rows), np.concatenate(item_rows)


def _inverse_retrieval_weights(item_category: pd.Series) -> np.ndarray:
    """``[c, i]``: 1 / retrieval weight of item ``i`` for a query in category ``c``.

    Items of the query category weigh ``w``, the others 1, with ``w`` set so that the first
    draw lands in the query category with probability ``IN_CATEGORY_SHARE``.
    """
    category = pd.Index(CATEGORIES).get_indexer(item_category)
    n_in = np.bincount(category, minlength=len(CATEGORIES)).astype(float)
    n_out = np.maximum(len(category) - n_in, 1)  # a one-category catalogue: any weight works
    inverse_in_weight = (1 - IN_CATEGORY_SHARE) / IN_CATEGORY_SHARE * n_in / n_out
    is_in = category[None, :] == np.arange(len(CATEGORIES))[:, None]
    return np.where(is_in, inverse_in_weight[:, None], 1.0).astype(np.float32)


def _smallest_keys(key: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the ``size[row]`` smallest finite keys of each row of ``key``."""
    k_max = min(int(size.max()), key.shape[1])
    top = np.argpartition(key, k_max - 1, axis=1)[:, :k_max]
    top_key = np.take_along_axis(key, top, axis=1)
    rank = np.argsort(top_key, axis=1)  # argpartition leaves the k_max smallest unordered
    top, top_key = np.take_along_axis(top, rank, 1), np.take_along_axis(top_key, rank, 1)
    keep = (np.arange(k_max)[None, :] < size[:, None]) & np.isfinite(top_key)
    return np.nonzero(keep)[0], top[keep]


# ---- clicks ----
def draw_clicks(
    shown: pd.DataFrame,
    sessions: pd.DataFrame,
    click_model: ClickModel,
    end: pd.Timestamp,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Clicks under the position-based model, purchases after some of them.

    A click comes a few seconds to minutes after the session starts, later for lower
    positions (users scroll); clipped just before ``end`` so no event lies in the future.
    ``shown`` holds session_id, item_id, position, true_utility and device; its session ids
    must be row numbers of ``sessions``, as ``draw_sessions`` gives them.
    """
    p_click = click_model.click_probability(
        shown[TRUE_UTILITY].to_numpy(), shown[POSITION].to_numpy(), shown[DEVICE]
    )
    clicked = shown[rng.random(len(shown)) < p_click]
    purchased = rng.random(len(clicked)) < click_model.purchase_probability(
        clicked[TRUE_UTILITY].to_numpy()
    )
    session_ns = _epoch_ns(sessions["ts"])[clicked[SESSION_ID].to_numpy()]  # ids are row numbers
    delay_s = 3.0 * clicked[POSITION].to_numpy() + rng.lognormal(np.log(20.0), 0.8, len(clicked))
    click_ns = session_ns + np.round(delay_s).astype(np.int64) * 1_000_000_000
    last_ns = (end - pd.Timedelta(seconds=1)).as_unit("ns").value
    return pd.DataFrame(
        {
            SESSION_ID: clicked[SESSION_ID].to_numpy(),
            ITEM_ID: clicked[ITEM_ID].to_numpy(),
            "ts": pd.to_datetime(np.minimum(click_ns, last_ns), utc=True),
            PURCHASED: purchased,
        }
    )


# ---- summary ----
def summarize(tables: dict[str, pd.DataFrame], data: DataSettings) -> dict[str, float]:
    """Headline numbers of a generated marketplace (for run metadata and the README)."""
    start, _ = window(data)
    sessions, impressions, clicks = tables["sessions"], tables["impressions"], tables["clicks"]
    clicks_per_session = (
        clicks.groupby(SESSION_ID).size().reindex(sessions[SESSION_ID], fill_value=0)
    )
    return {
        **{f"rows_{name}": float(len(tables[name])) for name in RAW_TABLES},
        "click_through_rate": len(clicks) / len(impressions),
        "clicks_per_session": float(clicks_per_session.mean()),
        "share_sessions_without_click": float((clicks_per_session == 0).mean()),
        "purchases_per_click": float(clicks[PURCHASED].mean()) if len(clicks) else 0.0,
        "share_cold_start_users": float((tables["users"]["signup_ts"] >= start).mean()),
        "share_cold_start_items": float((tables["items"]["launch_ts"] >= start).mean()),
        "mean_slate_size": len(impressions) / len(sessions),
    }
