"""The rules raw tables must pass before anything downstream reads them.

Each rule is a plain function ``rule(tables, now) -> CheckResult`` registered by name in
``RULES``, so the pipeline can wire each one into its own blocking asset check, and tests can
call it directly. ``validate_raw`` runs them all and ``raise_on_failures`` fails once, listing
every broken rule: a person fixing the data sees all the problems at the first try.

Schemas, dtypes, nulls and value ranges are pandera ``DataFrameSchema`` objects (one per
table); the rules across tables (keys, references, time order, freshness) are pandas.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from ranklab.schema import (
    CATEGORIES,
    DEVICE,
    DEVICES,
    ITEM_ID,
    POLICY_POSITION,
    POSITION,
    PURCHASED,
    QUERY_CATEGORY,
    RANDOMIZED,
    RAW_TABLES,
    REGION,
    REGIONS,
    SESSION_ID,
    USER_ID,
)

Tables = Mapping[str, pd.DataFrame]
DEFAULT_MAX_EVENT_AGE = timedelta(days=2)  # newest session older than this: the feed stalled
SAMPLE_ROWS = 5  # failing rows kept in a result (and 3 of them shown in its message)

# The key of each table: what a row is about, and what is shown for a failing row.
KEYS = {
    "users": [USER_ID],
    "items": [ITEM_ID],
    "sessions": [SESSION_ID],
    "impressions": [SESSION_ID, ITEM_ID],
    "clicks": [SESSION_ID, ITEM_ID],
}


class DataValidationError(ValueError):
    """Raw data broke one or more rules; ``results`` holds every failed ``CheckResult``."""

    def __init__(self, results: list[CheckResult]):
        self.results = results
        lines = [f"- {r.name}: {r.message}" for r in results]
        super().__init__(f"{len(results)} raw data check(s) failed:\n" + "\n".join(lines))


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one rule on one table; ``message`` says which rows fail and why."""

    name: str
    table: str
    passed: bool
    failing_rows: int
    message: str
    sample: list[dict] = field(default_factory=list)


Rule = Callable[[Tables, datetime], CheckResult]
RULES: dict[str, Rule] = {}


# ---- schemas: columns, dtypes, nulls, ranges (pandera) ----
def _utc_timestamp() -> pa.Column:
    return pa.Column(pd.DatetimeTZDtype("ns", "UTC"))


def _one_of(values: Iterable[str]) -> pa.Column:
    return pa.Column(str, pa.Check.isin(list(values)))


def _identifier() -> pa.Column:
    return pa.Column("int64", pa.Check.ge(0))


SCHEMAS = {
    "users": pa.DataFrameSchema(
        {
            USER_ID: _identifier(),
            REGION: _one_of(REGIONS),
            "preferred_device": _one_of(DEVICES),
            "signup_ts": _utc_timestamp(),
        },
        strict=True,
    ),
    "items": pa.DataFrameSchema(
        {
            ITEM_ID: _identifier(),
            "category": _one_of(CATEGORIES),
            "brand": pa.Column(str),
            "price": pa.Column(float, pa.Check.gt(0)),
            "launch_ts": _utc_timestamp(),
        },
        strict=True,
    ),
    "sessions": pa.DataFrameSchema(
        {
            SESSION_ID: _identifier(),
            USER_ID: _identifier(),
            "ts": _utc_timestamp(),
            DEVICE: _one_of(DEVICES),
            REGION: _one_of(REGIONS),
            QUERY_CATEGORY: _one_of(CATEGORIES),
        },
        strict=True,
    ),
    "impressions": pa.DataFrameSchema(
        {
            SESSION_ID: _identifier(),
            ITEM_ID: _identifier(),
            POSITION: pa.Column("int64", pa.Check.ge(1)),
            RANDOMIZED: pa.Column(bool),
            POLICY_POSITION: pa.Column("int64", pa.Check.ge(1)),
        },
        strict=True,
    ),
    "clicks": pa.DataFrameSchema(
        {
            SESSION_ID: _identifier(),
            ITEM_ID: _identifier(),
            "ts": _utc_timestamp(),
            PURCHASED: pa.Column(bool),
        },
        strict=True,
    ),
}


def _schema_rule(table: str) -> Rule:
    """Columns, dtypes, nulls and ranges of ``table``, every problem at once (lazy)."""

    def check(tables: Tables, now: datetime) -> CheckResult:
        name = f"{table}_schema"
        if table not in tables:
            return CheckResult(name, table, False, 0, f"{table}: table missing from the raw data")
        try:
            SCHEMAS[table].validate(tables[table], lazy=True)
        except SchemaErrors as errors:
            return _schema_failure(name, table, tables[table], errors.failure_cases)
        return CheckResult(name, table, True, 0, f"{table}: schema, dtypes and ranges hold")

    check.__name__ = f"{table}_schema"
    check.__doc__ = f"``{table}`` matches its pandera schema (columns, dtypes, nulls, ranges)."
    return check


def _schema_failure(name: str, table: str, frame: pd.DataFrame, cases: pd.DataFrame) -> CheckResult:
    """One readable line per (column, check) that failed, with example rows."""
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        where = f"column {column!r}" if isinstance(column, str) else "table"
        rows = group["index"].dropna()
        examples = ", ".join(str(v) for v in group["failure_case"].head(3))
        count = f" in {_rows(len(rows))}" if len(rows) else ""
        problems.append(f"{where} fails {check}{count} (found: {examples})")
    failing_index = pd.Index(cases["index"].dropna().unique())
    shown = [c for c in [*KEYS[table], *cases["column"].dropna().unique()] if c in frame]
    sample = _records(frame.loc[frame.index.intersection(failing_index), shown])
    message = f"{table}: {'; '.join(problems)}"
    return CheckResult(name, table, False, len(failing_index), message, sample)


for _table in RAW_TABLES:
    RULES[f"{_table}_schema"] = _schema_rule(_table)


# ---- row rules: each returns the failing rows; the decorator makes the CheckResult ----
def _rule(table: str, finding: str) -> Callable[[Callable[[Tables, datetime], pd.DataFrame]], Rule]:
    """Register a rule whose body returns the rows of ``table`` that break it.

    ``finding`` completes "<n> rows ..." in the message. A rule that cannot run on the input
    (a table or column missing, a column of the wrong type) fails and says why, so that
    ``validate_raw`` still runs the other rules; the schema rules say more.
    """

    def register(body: Callable[[Tables, datetime], pd.DataFrame]) -> Rule:
        @functools.wraps(body)
        def check(tables: Tables, now: datetime) -> CheckResult:
            try:
                failing = body(tables, _aware(now))
            except KeyError as missing:
                message = f"{table}: cannot check, missing table or column {missing}"
                return CheckResult(body.__name__, table, False, 0, message)
            except TypeError as wrong_type:
                message = f"{table}: cannot check, a column has the wrong type ({wrong_type})"
                return CheckResult(body.__name__, table, False, 0, message)
            return _row_result(body.__name__, table, failing, len(tables[table]), finding)

        RULES[body.__name__] = check
        return check

    return register


def _row_result(
    name: str, table: str, failing: pd.DataFrame, total: int, finding: str
) -> CheckResult:
    if failing.empty:
        return CheckResult(name, table, True, 0, f"{table}: none of {total} rows {finding}")
    sample = _records(failing)
    shown = ", ".join(" ".join(f"{k}={v}" for k, v in row.items()) for row in sample[:3])
    more = ", ..." if len(failing) > 3 else ""
    message = f"{table}: {len(failing)} of {total} rows {finding} ({shown}{more})"
    return CheckResult(name, table, False, len(failing), message, sample)


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _records(frame: pd.DataFrame) -> list[dict]:
    """The first failing rows as JSON-friendly dicts (timestamps as ISO strings)."""
    return json.loads(frame.head(SAMPLE_ROWS).to_json(orient="records", date_format="iso"))


def _aware(now: datetime) -> pd.Timestamp:
    """``now`` as a UTC timestamp; a naive ``now`` is ambiguous against UTC event times."""
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware (UTC), got naive {now!r}")
    return pd.Timestamp(now).tz_convert("UTC")


def _duplicates(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return frame.loc[frame.duplicated(key, keep=False), key].sort_values(key)


def _unknown(frame: pd.DataFrame, key: str, reference: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame[key].isin(reference[key])]


@_rule("users", "repeat a user_id")
def users_unique_keys(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _duplicates(tables["users"], KEYS["users"])


@_rule("items", "repeat an item_id")
def items_unique_keys(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _duplicates(tables["items"], KEYS["items"])


@_rule("sessions", "repeat a session_id")
def sessions_unique_keys(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _duplicates(tables["sessions"], KEYS["sessions"])


@_rule("impressions", "repeat a (session_id, item_id) pair")
def impressions_unique_keys(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _duplicates(tables["impressions"], KEYS["impressions"])


@_rule("impressions", "share a position with another item of their session")
def impressions_unique_positions(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    """Two items at one position would make position-bias estimates meaningless."""
    impressions = tables["impressions"]
    repeated = impressions.duplicated([SESSION_ID, POSITION], keep=False)
    return impressions.loc[repeated, [SESSION_ID, ITEM_ID, POSITION]]


@_rule("clicks", "repeat a (session_id, item_id) pair")
def clicks_unique_keys(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _duplicates(tables["clicks"], KEYS["clicks"])


@_rule("users", "sign up after now")
def users_not_in_future(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    users = tables["users"]
    return users.loc[users["signup_ts"] > now, [USER_ID, "signup_ts"]]


@_rule("sessions", "start after now")
def sessions_not_in_future(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    sessions = tables["sessions"]
    return sessions.loc[sessions["ts"] > now, [SESSION_ID, "ts"]]


@_rule("clicks", "happen after now")
def clicks_not_in_future(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    clicks = tables["clicks"]
    return clicks.loc[clicks["ts"] > now, [SESSION_ID, ITEM_ID, "ts"]]


@_rule("sessions", "belong to a user_id missing from users")
def sessions_known_users(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _unknown(tables["sessions"], USER_ID, tables["users"])[[SESSION_ID, USER_ID]]


@_rule("impressions", "belong to a session_id missing from sessions")
def impressions_known_sessions(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _unknown(tables["impressions"], SESSION_ID, tables["sessions"])[KEYS["impressions"]]


@_rule("impressions", "show an item_id missing from items")
def impressions_known_items(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _unknown(tables["impressions"], ITEM_ID, tables["items"])[KEYS["impressions"]]


@_rule("clicks", "belong to a session_id missing from sessions")
def clicks_known_sessions(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    return _unknown(tables["clicks"], SESSION_ID, tables["sessions"])[KEYS["clicks"]]


@_rule("clicks", "click an item that was not shown in that session")
def clicks_on_shown_items(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    """A click without its impression means a join or logging bug: labels would be wrong."""
    key = KEYS["clicks"]
    shown = tables["impressions"][key].drop_duplicates()
    joined = tables["clicks"][key].merge(shown, on=key, how="left", indicator=True)
    return joined.loc[joined["_merge"] == "left_only", key]


@_rule("impressions", "show an item before its launch_ts")
def impressions_after_item_launch(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    shown = (
        tables["impressions"][KEYS["impressions"]]
        .merge(tables["sessions"][[SESSION_ID, "ts"]], on=SESSION_ID)
        .merge(tables["items"][[ITEM_ID, "launch_ts"]], on=ITEM_ID)
    )
    return shown[shown["ts"] < shown["launch_ts"]]


@_rule("sessions", "start before their user's signup_ts")
def sessions_after_user_signup(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    sessions = tables["sessions"][[SESSION_ID, USER_ID, "ts"]].merge(
        tables["users"][[USER_ID, "signup_ts"]], on=USER_ID
    )
    return sessions[sessions["ts"] < sessions["signup_ts"]]


@_rule("clicks", "happen before their session starts")
def clicks_after_session_start(tables: Tables, now: pd.Timestamp) -> pd.DataFrame:
    clicks = tables["clicks"][[*KEYS["clicks"], "ts"]].merge(
        tables["sessions"][[SESSION_ID, "ts"]], on=SESSION_ID, suffixes=("", "_session")
    )
    return clicks[clicks["ts"] < clicks["ts_session"]]


# ---- freshness: a property of the newest row, not of each row ----
def sessions_fresh(
    tables: Tables, now: datetime, max_age: timedelta = DEFAULT_MAX_EVENT_AGE
) -> CheckResult:
    """The newest session is at most ``max_age`` old at ``now``: else the event feed stalled."""
    name, now = "sessions_fresh", _aware(now)
    if "sessions" not in tables or "ts" not in tables["sessions"]:
        return CheckResult(name, "sessions", False, 0, "sessions: cannot check, no ts column")
    newest = tables["sessions"]["ts"].max()
    if pd.isna(newest):
        return CheckResult(name, "sessions", False, 0, "sessions: no sessions at all")
    try:
        age = now - newest
    except TypeError as wrong_type:
        message = f"sessions: cannot check, ts has the wrong type ({wrong_type})"
        return CheckResult(name, "sessions", False, 0, message)
    passed = age <= max_age
    verdict = "within" if passed else "older than"
    message = (
        f"sessions: newest session at {newest.isoformat()} is {age} old at now="
        f"{now.isoformat()}, {verdict} the limit of {pd.Timedelta(max_age)}"
    )
    return CheckResult(name, "sessions", passed, 0, message)


RULES["sessions_fresh"] = sessions_fresh


# ---- running them all ----
def validate_raw(
    tables: Tables, now: datetime, max_event_age: timedelta = DEFAULT_MAX_EVENT_AGE
) -> list[CheckResult]:
    """Run every rule in ``RULES`` (none stops the others) and return all the results."""
    _aware(now)  # a naive clock is a caller error, not a data problem: fail before checking
    rules = {**RULES, "sessions_fresh": functools.partial(sessions_fresh, max_age=max_event_age)}
    return [rule(tables, now) for rule in rules.values()]


def raise_on_failures(results: Iterable[CheckResult]) -> None:
    """Raise one ``DataValidationError`` listing every failed result; do nothing if none."""
    failed = [r for r in results if not r.passed]
    if failed:
        raise DataValidationError(failed)
