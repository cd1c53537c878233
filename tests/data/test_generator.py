"""The generated marketplace: shape, determinism, and the behaviour the lessons rely on."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from features.events import contract_view, read_raw, write_raw
from ranklab.schema import RAW_TABLES
from ranklab.settings import DataSettings
from simulation.click_model import REGIONS, ClickModel
from simulation.generator import (
    generate_marketplace,
    scaled_sizes,
    summarize,
    window,
)

SMALL = DataSettings(scale=0.2)  # 400 users, 200 items, 1200 sessions: well under a second

DOCUMENTED_COLUMNS = {  # ranklab/schema.py, without the latent_* ground truth
    "users": ["user_id", "region", "preferred_device", "signup_ts"],
    "items": ["item_id", "category", "brand", "price", "launch_ts"],
    "sessions": ["session_id", "user_id", "ts", "device", "region", "query_category"],
    "impressions": [
        "session_id",
        "item_id",
        "position",
        "randomized",
        "policy_position",
        "true_utility",
        "true_relevance",
        "expected_utility",
    ],
    "clicks": ["session_id", "item_id", "ts", "purchased"],
}


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_marketplace(SMALL)


@pytest.fixture(scope="module")
def shown(tables) -> pd.DataFrame:
    """Impressions with their session's context, item's facts and whether they were clicked."""
    key = ["session_id", "item_id"]
    frame = (
        tables["impressions"]
        .merge(tables["sessions"], on="session_id")
        .merge(tables["items"][["item_id", "category", "launch_ts"]], on="item_id")
    )
    clicked = pd.MultiIndex.from_frame(frame[key]).isin(
        pd.MultiIndex.from_frame(tables["clicks"][key])
    )
    return frame.assign(clicked=clicked)


def _mean_ndcg_at_10(frame: pd.DataFrame, by: str, ascending: bool) -> float:
    """Mean NDCG@10 (gain 2^grade - 1) of each session's rows ordered by ``by``; sessions
    without any relevant item are left out (every order is perfect there)."""

    def dcg_at_10(order: list[str], ascending: list[bool]) -> pd.Series:
        rows = frame.sort_values(["session_id", *order], ascending=[True, *ascending])
        rank = rows.groupby("session_id").cumcount()
        gain = (2.0 ** rows["true_relevance"] - 1) / np.log2(rank + 2)
        return gain.where(rank < 10, 0.0).groupby(rows["session_id"]).sum()

    ideal = dcg_at_10(["true_relevance"], [False])
    return float((dcg_at_10([by], [ascending]) / ideal)[ideal > 0].mean())


# ---- shape ----
def test_tables_have_exactly_the_documented_columns(tables):
    assert list(tables) == list(RAW_TABLES)
    for name, frame in tables.items():
        plain = [c for c in frame.columns if not c.startswith("latent_")]
        assert plain == DOCUMENTED_COLUMNS[name], name


def test_sizes_follow_the_scale(tables):
    sizes = scaled_sizes(SMALL)
    assert sizes == {"users": 400, "items": 200, "sessions": 1200}
    assert len(tables["users"]) == 400
    assert len(tables["items"]) == 200
    assert len(tables["sessions"]) == 1200


def test_timestamps_are_utc_and_inside_the_window(tables):
    start, end = window(SMALL)
    assert end - start == pd.Timedelta(days=SMALL.n_days)
    for name, column in [("sessions", "ts"), ("clicks", "ts"), ("users", "signup_ts")]:
        assert str(tables[name][column].dtype) == "datetime64[ns, UTC]", name
    assert tables["sessions"]["ts"].between(start, end, inclusive="left").all()
    assert tables["clicks"]["ts"].max() < end


# ---- determinism ----
def test_same_seed_gives_identical_tables(tables):
    again = generate_marketplace(SMALL)
    for name in RAW_TABLES:
        pd.testing.assert_frame_equal(tables[name], again[name])


def test_another_seed_gives_other_tables(tables):
    other = generate_marketplace(SMALL.model_copy(update={"seed": 8}))
    assert not tables["impressions"]["item_id"].equals(other["impressions"]["item_id"])


# ---- slates ----
def test_slates_have_contiguous_positions_and_no_repeats(tables):
    impressions = tables["impressions"]
    per_session = impressions.groupby("session_id")
    sizes = per_session.size()
    assert sizes.between(SMALL.slate_min, SMALL.slate_max).all()
    assert (per_session["position"].max() == sizes).all()
    assert not impressions.duplicated(["session_id", "position"]).any()
    assert not impressions.duplicated(["session_id", "item_id"]).any()


def test_most_candidates_come_from_the_query_category(shown):
    share = (shown["category"] == shown["query_category"]).mean()
    assert 0.65 < share < 0.9


def test_items_are_shown_only_after_launch_and_cold_items_do_get_shown(tables, shown):
    start, _ = window(SMALL)
    assert (shown["launch_ts"] <= shown["ts"]).all()
    cold_items = tables["items"].loc[tables["items"]["launch_ts"] >= start, "item_id"]
    assert 0.05 < len(cold_items) / len(tables["items"]) < 0.3
    assert shown["item_id"].isin(cold_items).any()


def test_sessions_start_after_their_user_signed_up(tables):
    sessions = tables["sessions"].merge(tables["users"], on="user_id")
    assert (sessions["signup_ts"] <= sessions["ts"]).all()
    assert (sessions["region_x"] == sessions["region_y"]).all()  # a session has its user's region


def test_user_activity_is_heavy_tailed(tables):
    sessions_per_user = tables["sessions"]["user_id"].value_counts()
    top_tenth = sessions_per_user.head(len(tables["users"]) // 10).sum()
    assert top_tenth / len(tables["sessions"]) > 0.25


# ---- the logging policy and the clicks ----
def test_logging_policy_is_better_than_random_and_worse_than_the_oracle(shown):
    logged = _mean_ndcg_at_10(shown, "position", ascending=True)
    oracle = _mean_ndcg_at_10(shown, "true_utility", ascending=False)
    shuffled = _mean_ndcg_at_10(
        shown.assign(noise=np.random.default_rng(0).random(len(shown))), "noise", True
    )
    assert oracle == pytest.approx(1.0)
    assert shuffled + 0.15 < logged < oracle - 0.2


def test_clicks_are_position_biased(shown):
    ctr = shown.groupby("position")["clicked"].mean()
    assert ctr[1] > 3 * ctr[10]


def test_clicks_and_purchases_are_plausible(tables):
    summary = summarize(tables, SMALL)
    assert 0.02 < summary["click_through_rate"] < 0.1
    assert 0.6 < summary["clicks_per_session"] < 2.0
    assert 0.15 < summary["share_sessions_without_click"] < 0.5
    assert 0.05 < summary["purchases_per_click"] < 0.4


def test_device_slices_differ_in_clicks(shown):
    ctr = shown.groupby("device")["clicked"].mean()
    assert ctr["mobile"] < ctr["tablet"] < ctr["desktop"]


def test_region_noise_makes_regions_differ(tables):
    """The utility no feature explains grows from the first region to the last."""
    users = tables["users"].set_index("user_id")
    items = tables["items"].set_index("item_id")
    rows = tables["impressions"].merge(tables["sessions"], on="session_id")
    expected = ClickModel().true_utility(
        users.loc[rows["user_id"]].reset_index(),
        items.loc[rows["item_id"]].reset_index(),
        rows,
    )
    noise_sd = (rows["true_utility"] - expected).groupby(rows["region"]).std()
    assert noise_sd[list(REGIONS)].is_monotonic_increasing
    assert noise_sd["central"] > 2 * noise_sd["north"]


def test_default_scale_generates_in_well_under_five_seconds():
    started = time.perf_counter()
    generated = generate_marketplace(DataSettings())
    assert time.perf_counter() - started < 5.0
    assert len(generated["sessions"]) == 6000
    assert 130_000 < len(generated["impressions"]) < 170_000


def test_inconsistent_slate_bounds_are_rejected():
    with pytest.raises(ValueError, match=r"slate_min \(30\) exceeds slate_max \(20\)"):
        generate_marketplace(DataSettings(scale=0.05, slate_min=30, slate_max=20))


# ---- files ----
def test_raw_tables_round_trip_through_parquet(tables, tmp_path):
    paths = write_raw(tables, tmp_path / "raw")
    assert sorted(p.name for p in paths.values()) == sorted(f"{t}.parquet" for t in RAW_TABLES)
    back = read_raw(tmp_path / "raw")
    # Only the contract's columns are written and read back: the world keeps its truth.
    for name in RAW_TABLES:
        pd.testing.assert_frame_equal(back[name], contract_view(tables)[name])
    assert not any(
        c.startswith(("true_", "latent_", "expected_")) for t in back.values() for c in t
    )


def test_write_raw_refuses_an_incomplete_set_before_writing(tables, tmp_path):
    partial = {name: frame for name, frame in tables.items() if name != "clicks"}
    with pytest.raises(KeyError, match=r"tables \['clicks'\] missing"):
        write_raw(partial, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_read_raw_names_the_missing_table(tables, tmp_path):
    write_raw(tables, tmp_path)
    (tmp_path / "impressions.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"raw table 'impressions' not found"):
        read_raw(tmp_path)


# ---- the click model on its own ----
def test_examination_falls_with_position_and_faster_on_mobile():
    model = ClickModel()
    positions = np.arange(1, 11)
    mobile = model.examination(positions, np.repeat("mobile", 10))
    desktop = model.examination(positions, np.repeat("desktop", 10))
    assert mobile[0] == desktop[0] == 1.0
    assert (np.diff(mobile) < 0).all()
    assert (mobile[1:] < desktop[1:]).all()
    assert mobile[9] == pytest.approx(0.1)  # (1/10) ** 1.0


def test_relevance_grades_use_fixed_cut_points():
    grades = ClickModel().relevance_grade(np.array([-2.0, 0.99, 1.0, 2.5, 3.5, 9.0]))
    assert grades.tolist() == [0, 0, 1, 2, 3, 4]


def test_attraction_and_purchase_rise_with_utility():
    model = ClickModel()
    utility = np.linspace(-3, 8, 12)
    assert (np.diff(model.attraction(utility)) > 0).all()
    assert (np.diff(model.purchase_probability(utility)) > 0).all()
    assert model.purchase_probability(np.array([100.0]))[0] == pytest.approx(0.5)


def test_click_model_rejects_bad_input():
    model = ClickModel()
    with pytest.raises(ValueError, match=r"unknown device \['watch'\]"):
        model.examination(np.array([1, 2]), np.array(["mobile", "watch"]))
    with pytest.raises(ValueError, match="positions are 1-based"):
        model.examination(np.array([0]), np.array(["mobile"]))
    one_row = pd.DataFrame({"x": [1]})
    with pytest.raises(ValueError, match="row-aligned; got 1, 1 and 2 rows"):
        model.true_utility(one_row, one_row, pd.DataFrame({"x": [1, 2]}))
