"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008), written out by hand.

An A/B split compares two groups of users, so every user's own noise (how much they click
at all) sits in the comparison. Interleaving shows *each* user one list merged from both
rankers and lets the user's clicks vote: the same person, the same query, the same moment
judge both. That removes the between-user variance, which is why it needs far fewer
sessions to tell which ranker is better (``benchmarks/abtest.py`` measures how many).

Team draft, like picking teams in a school yard: each round, a coin decides which ranker
picks first; each picks its highest-ranked item not yet in the list. Every shown item
belongs to the team that picked it. A click credits that team. A session is won by the
team with more clicks; a tie (including no click) credits no one.

What it cannot tell: *how much* better in clicks per session (the A/B's lift), nor any
guardrail. It answers "which ranker do users prefer"; the A/B test then sizes the win.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

TEAM_A = "A"  # the control, by convention
TEAM_B = "B"  # the treatment


def team_draft(
    ranking_a: np.ndarray,
    ranking_b: np.ndarray,
    rng: np.random.Generator,
    length: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Interleave two rankings of the same items; returns (items, team of each item)."""
    if set(ranking_a.tolist()) != set(ranking_b.tolist()):
        raise ValueError("team_draft: both rankings must order the same items")
    length = len(ranking_a) if length is None else min(length, len(ranking_a))
    shown: list[int] = []
    teams: list[str] = []
    taken: set[int] = set()
    picks = {TEAM_A: 0, TEAM_B: 0}
    cursor = {TEAM_A: 0, TEAM_B: 0}
    rankings = {TEAM_A: ranking_a, TEAM_B: ranking_b}
    while len(shown) < length:
        # The team with fewer picks goes next; on a tie a coin decides.
        if picks[TEAM_A] != picks[TEAM_B]:
            team = TEAM_A if picks[TEAM_A] < picks[TEAM_B] else TEAM_B
        else:
            team = TEAM_A if rng.random() < 0.5 else TEAM_B
        ranking = rankings[team]
        while int(ranking[cursor[team]]) in taken:  # skip what the other team already took
            cursor[team] += 1
        item = int(ranking[cursor[team]])
        shown.append(item)
        teams.append(team)
        taken.add(item)
        picks[team] += 1
    return np.array(shown, dtype=np.int64), np.array(teams)


def credit(teams: np.ndarray, clicked: np.ndarray) -> tuple[int, int]:
    """Clicks credited to (A, B) in one session: ``clicked`` is a boolean per shown item."""
    clicked = np.asarray(clicked, dtype=bool)
    return int((clicked & (teams == TEAM_A)).sum()), int((clicked & (teams == TEAM_B)).sum())


@dataclass(frozen=True)
class InterleavingResult:
    sessions: int
    wins_a: int
    wins_b: int
    ties: int
    preference: float  # (wins_b - wins_a) / sessions: > 0 means users prefer B
    preference_lo: float
    preference_hi: float
    p_value: float  # two-sided sign test of wins_b against wins_a
    alpha: float

    @property
    def verdict(self) -> str:
        if self.p_value < self.alpha:
            return "ship" if self.wins_b > self.wins_a else "don't ship"
        return "inconclusive"

    def describe(self) -> str:
        return (
            f"{self.sessions:,} interleaved sessions: B won {self.wins_b:,}, A won "
            f"{self.wins_a:,}, {self.ties:,} ties; preference for B {self.preference:+.3f} "
            f"[{self.preference_lo:+.3f}, {self.preference_hi:+.3f}], sign test "
            f"p={self.p_value:.3g} -> {self.verdict}"
        )


def interleaving_result(
    clicks_a: np.ndarray, clicks_b: np.ndarray, alpha: float = 0.05
) -> InterleavingResult:
    """The preference from per-session credited clicks of A and B.

    The test is a sign test (exact binomial) of B's wins among the sessions someone won; the
    interval of the preference is the normal one over sessions (each session scores +1, -1
    or 0)."""
    clicks_a, clicks_b = np.asarray(clicks_a), np.asarray(clicks_b)
    if len(clicks_a) != len(clicks_b) or len(clicks_a) == 0:
        raise ValueError("interleaving_result: give the same, non-zero number of sessions")
    score = np.sign(clicks_b - clicks_a)
    wins_b, wins_a = int((score > 0).sum()), int((score < 0).sum())
    decided = wins_a + wins_b
    p_value = 1.0 if decided == 0 else float(stats.binomtest(wins_b, decided, 0.5).pvalue)
    n = len(score)
    se = float(score.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    z = float(stats.norm.ppf(1 - alpha / 2))
    mean = float(score.mean())
    return InterleavingResult(
        n, wins_a, wins_b, n - decided, mean, mean - z * se, mean + z * se, p_value, alpha
    )


def credit_sessions(teams: pd.DataFrame, clicks: pd.DataFrame) -> pd.DataFrame:
    """Per request, clicks credited to A and to B: ``teams`` has request_id, item_id, team
    (one row per shown item), ``clicks`` the click events (request_id, item_id)."""
    clicked = clicks[["request_id", "item_id"]].drop_duplicates().assign(clicked=True)
    rows = teams.merge(clicked, on=["request_id", "item_id"], how="left", validate="one_to_one")
    rows["clicked"] = rows["clicked"].eq(True)
    rows["a"] = rows["clicked"] & (rows["team"] == TEAM_A)
    rows["b"] = rows["clicked"] & (rows["team"] == TEAM_B)
    per = rows.groupby("request_id", sort=False)[["a", "b"]].sum().astype("int64")
    return per.rename(columns={"a": "clicks_a", "b": "clicks_b"}).reset_index()
