"""Each kind of corrupted raw data is caught by the rule meant for it, with a message saying why."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import pytest

from features.events import contract_view
from features.validation import (
    RULES,
    CheckResult,
    DataValidationError,
    raise_on_failures,
    sessions_fresh,
    validate_raw,
)
from ranklab.settings import DataSettings
from simulation.generator import generate_marketplace, window

DATA = DataSettings(scale=0.05)
NOW = window(DATA)[1].to_pydatetime()  # the end of the generated window: every event is before

Tables = dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def clean() -> Tables:
    # What the pipeline sees of the generated world: the data contract's columns only.
    return contract_view(generate_marketplace(DATA))


@pytest.fixture
def tables(clean) -> Tables:
    return {name: frame.copy() for name, frame in clean.items()}


def _failed(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results if not r.passed}


# ---- corruptions: each edits the tables in place ----
def _position_zero(t: Tables) -> None:
    first_of_three_sessions = t["impressions"].drop_duplicates("session_id").index[:3]
    t["impressions"].loc[first_of_three_sessions, "position"] = 0


def _negative_price(t: Tables) -> None:
    t["items"].loc[4, "price"] = -5.0


def _null_device(t: Tables) -> None:
    t["sessions"].loc[7, "device"] = None


def _policy_position_zero(t: Tables) -> None:
    t["impressions"].loc[0, "policy_position"] = 0


def _naive_click_timestamps(t: Tables) -> None:
    t["clicks"]["ts"] = t["clicks"]["ts"].dt.tz_localize(None)


def _missing_column(t: Tables) -> None:
    t["impressions"] = t["impressions"].drop(columns=["randomized"])


def _unexpected_column(t: Tables) -> None:
    t["sessions"]["clicked"] = False  # a label leaking into the raw sessions


def _duplicate_user(t: Tables) -> None:
    t["users"] = pd.concat([t["users"], t["users"].iloc[[3]]], ignore_index=True)


def _duplicate_impression(t: Tables) -> None:
    t["impressions"] = pd.concat([t["impressions"], t["impressions"].iloc[[10]]], ignore_index=True)


def _future_session(t: Tables) -> None:
    unclicked = t["sessions"].index[~t["sessions"]["session_id"].isin(t["clicks"]["session_id"])]
    t["sessions"].loc[unclicked[-1], "ts"] = pd.Timestamp(NOW) + pd.Timedelta(hours=1)


def _click_on_unshown_item(t: Tables) -> None:
    shown = set(t["impressions"].loc[t["impressions"]["session_id"] == 0, "item_id"])
    unshown = next(i for i in t["items"]["item_id"] if i not in shown)
    click = t["clicks"].iloc[[0]].assign(session_id=0, item_id=unshown)
    t["clicks"] = pd.concat([t["clicks"], click], ignore_index=True)


def _session_of_unknown_user(t: Tables) -> None:
    t["sessions"].loc[5, "user_id"] = 99_999


def _impression_of_unknown_item(t: Tables) -> None:
    t["impressions"].loc[2, "item_id"] = 99_999


def _item_shown_before_launch(t: Tables) -> None:
    item = t["impressions"].loc[0, "item_id"]
    t["items"].loc[t["items"]["item_id"] == item, "launch_ts"] = pd.Timestamp(NOW)


def _click_before_its_session(t: Tables) -> None:
    t["clicks"].loc[0, "ts"] = t["clicks"].loc[0, "ts"] - pd.Timedelta(days=3)


# (corruption, the rules that must fail and no others (the one meant for it first), what
# that rule's message says)
CORRUPTIONS: list[tuple[Callable[[Tables], None], tuple[str, ...], str]] = [
    (
        _position_zero,
        ("impressions_schema",),
        r"impressions: column 'position' fails greater_than_or_equal_to\(1\) in 3 rows",
    ),
    (_negative_price, ("items_schema",), r"column 'price' fails greater_than\(0\) in 1 row "),
    (_null_device, ("sessions_schema",), r"column 'device' fails not_nullable in 1 row "),
    (_policy_position_zero, ("impressions_schema",), r"'policy_position' fails greater_than"),
    (
        _naive_click_timestamps,
        ("clicks_schema", "clicks_not_in_future", "clicks_after_session_start"),
        r"column 'ts' fails dtype\('datetime64\[ns, UTC\]'\) \(found: datetime64\[ns\]\)",
    ),
    (_missing_column, ("impressions_schema",), r"column_in_dataframe \(found: randomized\)"),
    (_unexpected_column, ("sessions_schema",), r"column_in_schema \(found: clicked\)"),
    (_duplicate_user, ("users_unique_keys",), r"users: 2 of 101 rows repeat a user_id \(user_id=3"),
    (
        _duplicate_impression,
        ("impressions_unique_keys", "impressions_unique_positions"),
        r"impressions: 2 of \d+ rows repeat a \(session_id, item_id\) pair",
    ),
    (_future_session, ("sessions_not_in_future",), r"sessions: 1 of 300 rows start after now"),
    (
        _click_on_unshown_item,
        ("clicks_on_shown_items",),
        r"rows click an item that was not shown in that session \(session_id=0 item_id=\d+\)",
    ),
    (
        _session_of_unknown_user,
        ("sessions_known_users",),
        r"rows belong to a user_id missing from users \(session_id=5 user_id=99999\)",
    ),
    (
        _impression_of_unknown_item,
        ("impressions_known_items",),
        r"rows show an item_id missing from items \(session_id=\d+ item_id=99999\)",
    ),
    (
        _item_shown_before_launch,
        ("impressions_after_item_launch",),
        r"rows show an item before its launch_ts \(session_id=\d+ item_id=\d+ ts=.* launch_ts=",
    ),
    (
        _click_before_its_session,
        ("clicks_after_session_start",),
        r"clicks: 1 of \d+ rows happen before their session starts",
    ),
]


def test_clean_generated_data_passes_every_rule(clean):
    results = validate_raw(clean, NOW)
    assert [r.name for r in results] == list(RULES)
    assert _failed(results) == {}
    raise_on_failures(results)  # nothing to raise


@pytest.mark.parametrize(
    ("corrupt", "expected", "message"),
    CORRUPTIONS,
    ids=[corrupt.__name__.strip("_") for corrupt, _, _ in CORRUPTIONS],
)
def test_each_corruption_is_caught_by_its_rule(tables, corrupt, expected, message):
    corrupt(tables)
    failed = _failed(validate_raw(tables, NOW))
    assert set(failed) == set(expected)
    first = expected[0]
    assert re.search(message, failed[first].message), failed[first].message
    with pytest.raises(DataValidationError, match=rf"- {first}: .*{message}"):
        raise_on_failures(failed.values())


def test_row_rules_report_the_failing_rows(tables):
    _click_on_unshown_item(tables)
    result = RULES["clicks_on_shown_items"](tables, NOW)
    assert not result.passed and result.table == "clicks" and result.failing_rows == 1
    assert result.sample == [{"session_id": 0, "item_id": tables["clicks"]["item_id"].iloc[-1]}]


def test_schema_rules_sample_keys_and_failing_columns_as_json(tables):
    _negative_price(tables)
    result = RULES["items_schema"](tables, NOW)
    assert result.failing_rows == 1
    assert result.sample == [{"item_id": 4, "price": -5.0}]
    json.dumps(result.sample)  # fit for run metadata


def test_stale_sessions_fail_freshness(clean):
    later = NOW + timedelta(days=10)
    failed = _failed(validate_raw(clean, later))
    assert set(failed) == {"sessions_fresh"}
    assert re.search(
        r"newest session at 2026-09-29.* is 10 days .* older than the limit of 2 days",
        failed["sessions_fresh"].message,
    )
    assert sessions_fresh(clean, later, max_age=timedelta(days=11)).passed
    assert not _failed(validate_raw(clean, later, max_event_age=timedelta(days=11)))


def test_every_failure_is_reported_at_once(tables):
    _negative_price(tables)
    _duplicate_user(tables)
    _future_session(tables)
    with pytest.raises(DataValidationError, match="3 raw data check") as caught:
        raise_on_failures(validate_raw(tables, NOW))
    names = [r.name for r in caught.value.results]
    assert names == ["items_schema", "users_unique_keys", "sessions_not_in_future"]


def test_a_missing_table_fails_the_rules_that_need_it(tables):
    del tables["users"]
    failed = _failed(validate_raw(tables, NOW))
    assert failed["users_schema"].message == "users: table missing from the raw data"
    assert set(failed) == {
        "users_schema",
        "users_unique_keys",
        "users_not_in_future",
        "sessions_known_users",
        "sessions_after_user_signup",
    }
    assert "cannot check, missing table or column 'users'" in failed["sessions_known_users"].message


def test_naive_now_is_a_caller_error(clean):
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        validate_raw(clean, datetime(2026, 9, 30))


def test_every_rule_is_callable_by_name(clean):
    for name, rule in RULES.items():
        result = rule(clean, NOW)
        assert result.name == name and result.passed, result.message
        assert result.table in {"users", "items", "sessions", "impressions", "clicks"}
