"""Team-draft interleaving: the merged list is fair, and clicks credit the better ranker."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.abtest.interleaving import (
    TEAM_A,
    TEAM_B,
    credit,
    credit_sessions,
    interleaving_result,
    team_draft,
)


def test_team_draft_shows_every_item_once_with_balanced_teams_in_each_rankers_order():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.permutation(25)
        b = rng.permutation(25)
        shown, teams = team_draft(a, b, rng)
        assert sorted(shown.tolist()) == list(range(25))
        assert abs((teams == TEAM_A).sum() - (teams == TEAM_B).sum()) <= 1
        assert shown[0] in (a[0], b[0])
        for team, ranking in ((TEAM_A, a), (TEAM_B, b)):
            picked = shown[teams == team]
            where = [int(np.flatnonzero(ranking == item)[0]) for item in picked]
            assert where == sorted(where)  # each team picks in its own ranker's order


def test_team_draft_refuses_rankings_of_different_items():
    with pytest.raises(ValueError, match="same items"):
        team_draft(np.array([1, 2]), np.array([1, 3]), np.random.default_rng(0))


def test_clicks_credit_the_ranker_that_puts_what_users_want_on_top():
    """B ranks by the users' true utility, A at random; clicks follow position and utility."""
    rng = np.random.default_rng(1)
    clicks_a, clicks_b = [], []
    for _ in range(400):
        utility = rng.normal(size=20)
        a, b = rng.permutation(20), np.argsort(-utility)
        shown, teams = team_draft(a, b, rng)
        p_click = (1 / np.arange(1, 21)) * (1 / (1 + np.exp(-2 * utility[shown])))
        ca, cb = credit(teams, rng.random(20) < p_click)
        clicks_a.append(ca)
        clicks_b.append(cb)
    result = interleaving_result(np.array(clicks_a), np.array(clicks_b))
    assert result.verdict == "ship" and result.wins_b > 2 * result.wins_a
    assert result.preference_lo > 0


def test_identical_rankers_are_not_told_apart():
    rng = np.random.default_rng(2)
    p_values = []
    for _ in range(30):
        clicks = []
        for _ in range(300):
            ranking = rng.permutation(20)
            shown, teams = team_draft(ranking, ranking.copy(), rng)
            clicks.append(credit(teams, rng.random(20) < 0.5 / np.arange(1, 21)))
        ca, cb = np.array(clicks).T
        p_values.append(interleaving_result(ca, cb).p_value)
    assert np.mean(np.array(p_values) < 0.05) <= 0.2  # 5% nominal; 30 runs


def test_credit_sessions_counts_clicks_per_team_per_request():
    teams = pd.DataFrame(
        {"request_id": ["r1"] * 3 + ["r2"] * 2, "item_id": [1, 2, 3, 1, 2],
         "team": [TEAM_A, TEAM_B, TEAM_A, TEAM_B, TEAM_A]}
    )  # fmt: skip
    clicks = pd.DataFrame({"request_id": ["r1", "r1", "r2"], "item_id": [1, 3, 1]})
    per = credit_sessions(teams, clicks).set_index("request_id")
    assert per.loc["r1"].tolist() == [2, 0] and per.loc["r2"].tolist() == [0, 1]
