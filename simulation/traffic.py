"""The traffic simulator: the marketplace keeps running after the training window.

Each simulated day, in order:

1. the feature pipeline computes the day's snapshot from every event logged before it
   (``features.aggregates``, the code that feeds Feast), so the model's clicks of
   yesterday are in today's features, as in production;
2. new sessions are drawn from the same generator (``simulation.generator.draw_*``) with the
   day's world: the scenario, once active, changes the catalogue, the traffic mix, the
   users' behaviour or the feature pipeline's output (``simulation/scenarios.py``);
3. a ``RankingClient`` orders each session's candidates: the running service over HTTP, or
   the same request path in process (``simulation/clients.py``); it writes the prediction log;
4. users click on the order they were shown, under the generator's click model and ground
   truth. The clicks are the labels that reach monitoring later (``LABEL_DELAY``).

The result, ``Traffic``, is the world's ledger of what happened: the requests with their
simulated time, every shown item with its served position and true utility, and the clicks.
Saved, it splits along the wall: what a front end logs (``features.events.ServedTraffic``:
requests, impressions at their served position, clicks, the catalogue) goes where the
system reads it; the truth (utilities, the scenario's timing, latents) goes to the world's
own folder, for graders only.

Determinism: day ``d`` draws from ``default_rng([seed, d])``, and the scenario has its own
stream, so a scenario run and the control draw the same users, times and candidates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from features import aggregates
from features.events import LABEL_DELAY, REQUEST_ID, TS, ServedTraffic, traffic_dir
from ranklab import schema
from ranklab.io import write_json, write_parquet
from ranklab.settings import DataSettings, Settings
from simulation.click_model import ClickModel
from simulation.generator import (
    WEEKEND_LIFT,
    draw_candidates,
    draw_clicks,
    draw_sessions,
    window,
)
from simulation.scenarios import CONTROL, Scenario
from simulation.truth import EXPECTED_UTILITY, TRUE_RELEVANCE, TRUE_UTILITY

__all__ = ["LABEL_DELAY", "REQUEST_ID", "TS", "Traffic", "TrafficPlan", "traffic_dir"]
TRUTH_META = "world.json"  # a saved ledger's truth: written last, beside the full tables
SCENARIO_ACTIVE = "scenario_active"
_MEAN_DAY_LIFT = (5 + 2 * WEEKEND_LIFT) / 7  # the generator's weekly traffic shape, mean 1


# ---- the contract between the simulator and whatever ranks ----
@dataclass(frozen=True)
class RankingRequest:
    """One search, as the ranking service receives it (plus the simulated time)."""

    session_id: int
    ts: pd.Timestamp
    user_id: int
    device: str
    region: str
    query_category: str
    candidates: np.ndarray  # int64 item ids, retrieval order (not ranked)


@dataclass(frozen=True)
class ServedRanking:
    """What one request was answered with: the candidates in the order they were shown."""

    request_id: str
    order: np.ndarray  # item ids, best first: position p shows order[p - 1]
    served_by: str
    model_version: str
    # The randomisation intervention (serving/randomization.py): how many top positions were
    # shuffled (0: none) and the order the ranking itself chose before the shuffle.
    randomized_top_k: int = 0
    policy_order: np.ndarray | None = None


class RankingClient(Protocol):
    """Something that ranks requests and logs them: the HTTP service or the in-process path."""

    def start_day(self, day: pd.Timestamp, feature_tables: Mapping[str, pd.DataFrame]) -> None:
        """The day's feature snapshot is ready (the daily materialization in production)."""

    def rank(self, requests: Sequence[RankingRequest]) -> list[ServedRanking]:
        """One answer per request, in request order."""

    def close(self) -> None:
        """Flush the prediction log."""


# ---- what to simulate ----
@dataclass(frozen=True)
class TrafficPlan:
    """``days`` of traffic from the end of the training window; ``scenario`` from the start
    of day ``change_day`` on (0: from the first day; ``days``: never, a control run)."""

    days: int
    scenario: Scenario = CONTROL
    change_day: int = 0
    sessions_per_day: float | None = None  # None: the training data's daily volume
    seed: int = 0

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"TrafficPlan: days must be at least 1, got {self.days}")
        if not 0 <= self.change_day <= self.days:
            raise ValueError(
                f"TrafficPlan: change_day must lie in [0, days={self.days}], got {self.change_day}"
            )
        if self.sessions_per_day is not None and self.sessions_per_day <= 0:
            raise ValueError(
                f"TrafficPlan: sessions_per_day must be > 0, got {self.sessions_per_day}"
            )

    def daily_sessions(self, data: DataSettings) -> float:
        return self.sessions_per_day or data.sessions_per_day * data.scale


# ---- what happened ----
@dataclass
class Traffic(ServedTraffic):
    """The world's ledger of a simulation: ``ServedTraffic`` with the truth kept in its
    frames (see the module docstring): ``impressions`` carries true_* columns, ``requests``
    whether the scenario was active, ``items`` the latents."""

    @property
    def change_at(self) -> pd.Timestamp:
        """When the scenario started (the end of the traffic for a control run)."""
        return pd.Timestamp(self.meta["change_at"])

    def extend(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """The world's tables of the training window with this traffic appended, every
        column of the history kept (truth included), and the catalogue as it is now."""
        extended = _append(tables, self.requests, self.impressions, self.clicks)
        extended["items"] = self.items
        return extended

    def followed_by(self, later: Traffic) -> Traffic:
        """One ledger of this traffic and ``later`` (simulated with ``after=self``)."""
        if later.start != self.end:
            raise ValueError(
                f"traffic from {later.start} does not continue traffic ending at {self.end}"
            )
        frames = {
            name: pd.concat([getattr(self, name), getattr(later, name)], ignore_index=True)
            for name in ("requests", "impressions", "clicks")
        }
        meta = {
            **later.meta,
            "days": int(self.meta["days"]) + int(later.meta["days"]),
            "start": self.meta["start"],
            "change_at": self.meta["change_at"],
            "phases": [*self.meta.get("phases", [self.meta]), later.meta],
        }
        return Traffic(**frames, items=later.items, meta=meta)

    # ---- files: the system's view where the system reads, the truth in the world's folder ----
    def save(self, directory: Path, truth_directory: Path | None = None) -> Path:
        """The front end's log to ``directory`` (``ServedTraffic``'s contract columns) and,
        with ``truth_directory``, the whole ledger there (the world's copy, truth included)."""
        if truth_directory is not None:
            truth_directory = Path(truth_directory)
            for name in ("requests", "impressions", "clicks", "items"):
                write_parquet(getattr(self, name), truth_directory / f"{name}.parquet")
            write_json(self.meta, truth_directory / TRUTH_META)
        return super().save(directory)

    @classmethod
    def load_world(cls, truth_directory: Path) -> Traffic:
        """The whole ledger a ``save(..., truth_directory)`` kept."""
        truth_directory = Path(truth_directory)
        meta_path = truth_directory / TRUTH_META
        if not meta_path.exists():
            raise FileNotFoundError(f"no simulated traffic at {truth_directory}: simulate first")
        tables = {
            name: pd.read_parquet(truth_directory / f"{name}.parquet")
            for name in ("requests", "impressions", "clicks", "items")
        }
        return cls(**tables, meta=json.loads(meta_path.read_text(encoding="utf-8")))


def world_traffic_dir(settings: Settings, run: str) -> Path:
    """Where the world keeps the whole ledger (truth included) of a simulation run."""
    return settings.world_dir / "traffic" / run


# ---- the simulation ----
def simulate_traffic(
    tables: Mapping[str, pd.DataFrame],
    data: DataSettings,
    plan: TrafficPlan,
    client: RankingClient,
    click_model: ClickModel | None = None,
    after: Traffic | None = None,
) -> Traffic:
    """Run ``plan`` after the training window of ``tables`` (the generator's raw tables for
    ``data``), ranked by ``client``. Returns the ledger; the client holds the prediction log.

    With ``after`` (an earlier simulation over the same ``tables``), the days continue from
    its end, on its history, with their own draws (day numbers go on from its last day);
    ``plan.change_day`` counts from the new first day. ``after.followed_by(result)`` is the
    ledger of both."""
    aggregates.check_raw_tables(tables)
    simulation = _Simulation(plan, data, client, click_model or ClickModel())
    start = window(data)[1]
    history = {
        name: tables[name] for name in ("users", "items", "sessions", "impressions", "clicks")
    }
    first_draw = 0
    if after is not None:
        if after.start != start:
            raise ValueError(
                f"simulate_traffic(after=...): that traffic starts at {after.start}, not at the "
                f"end of this training window ({start})"
            )
        # The catalogue stays the training window's: the scenario applies its change itself.
        history = {**after.extend(history), "items": history["items"]}
        start, first_draw = after.end, int(after.meta["days"])
    next_session_id = int(history["sessions"][schema.SESSION_ID].max()) + 1
    days: list[_Day] = []
    try:
        for index in range(plan.days):
            day = simulation.day(
                history, start + pd.Timedelta(days=index), index, next_session_id, first_draw
            )
            next_session_id += len(day.requests)
            days.append(day)
            history = _append(history, day.requests, day.impressions, day.clicks)
    finally:
        client.close()
    last_scenario = plan.scenario if plan.change_day < plan.days else CONTROL
    return _ledger(days, last_scenario.items(tables["items"]), plan, start)


@dataclass
class _Day:
    requests: pd.DataFrame
    impressions: pd.DataFrame
    clicks: pd.DataFrame


def _append(
    history: Mapping[str, pd.DataFrame],
    sessions: pd.DataFrame,
    impressions: pd.DataFrame,
    clicks: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    """``history`` with the new rows appended, each table keeping its raw columns."""
    new = {"sessions": sessions, "impressions": impressions, "clicks": clicks}
    extended = dict(history)
    for name, rows in new.items():
        columns = list(history[name].columns)
        extended[name] = pd.concat([history[name], rows[columns]], ignore_index=True)
    return extended


@dataclass(frozen=True)
class _Simulation:
    plan: TrafficPlan
    data: DataSettings
    client: RankingClient
    base_click_model: ClickModel

    def day(
        self,
        history: Mapping[str, pd.DataFrame],
        day: pd.Timestamp,
        index: int,
        first_session_id: int,
        first_draw: int = 0,
    ) -> _Day:
        """Day ``index`` of the plan: features, searches, rankings, clicks."""
        plan = self.plan
        rng_volume, rng_sessions, rng_scenario, rng_retrieval, rng_utility, rng_clicks = (
            np.random.default_rng([plan.seed, first_draw + index]).spawn(6)
        )
        scenario = plan.scenario if index >= plan.change_day else CONTROL
        users = history["users"]
        items = scenario.items(history["items"])
        click_model = scenario.click_model(self.base_click_model)

        # 1. today's features come from every event before today
        self.client.start_day(day, scenario.feature_tables(_snapshot(history, items, day)))

        # 2. today's searches and their candidates (session ids are row numbers until the end)
        lift = WEEKEND_LIFT if day.dayofweek >= 5 else 1.0
        volume = plan.daily_sessions(self.data) * lift / _MEAN_DAY_LIFT
        sessions = draw_sessions(
            users, max(1, int(rng_volume.poisson(volume))), day, 1, rng_sessions
        )
        sessions = scenario.sessions(sessions, users, rng_scenario)
        session_row, item_row = draw_candidates(sessions, items, self.data, rng_retrieval)
        context = sessions.iloc[session_row].reset_index(drop=True)
        shown_users = users.set_index(schema.USER_ID).loc[context[schema.USER_ID]].reset_index()
        shown_items = items.iloc[item_row].reset_index(drop=True)
        utility = click_model.true_utility(shown_users, shown_items, context, rng_utility)
        expected = click_model.true_utility(shown_users, shown_items, context)

        # 3. the ranking client orders each slate
        item_ids = items[schema.ITEM_ID].to_numpy()[item_row]
        requests = _requests(sessions, session_row, item_ids, first_session_id)
        served = self.client.rank(requests)
        if len(served) != len(requests):
            raise RuntimeError(f"ranking client answered {len(served)} of {len(requests)} requests")
        truth = pd.DataFrame(
            {
                TRUE_UTILITY: utility,
                TRUE_RELEVANCE: click_model.relevance_grade(utility),
                EXPECTED_UTILITY: expected,
            }
        )
        shown = _shown(session_row, item_ids, truth, served, context)

        # 4. users click on what they were shown
        clicks = draw_clicks(shown, sessions, click_model, day + pd.Timedelta(days=1), rng_clicks)
        return _with_global_ids(sessions, shown, clicks, served, first_session_id)


def _snapshot(
    history: Mapping[str, pd.DataFrame], items: pd.DataFrame, day: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """The feature tables of ``day``: item attributes from today's catalogue, activity from
    the log. Past clicks keep the prices they were made at: activity features (the mean price
    a user clicked) value them with the catalogue from before the scenario. (Clicks made
    after a price change are valued at the old price too: a simplification of a world
    where the raw tables hold one price per item.)"""
    days = pd.DatetimeIndex([day])
    snapshot = aggregates.compute_feature_tables(history, days=days)
    snapshot[aggregates.ITEM_ATTRIBUTES] = aggregates.compute_item_attributes(
        {**history, "items": items}, days
    )
    return snapshot


def _requests(
    sessions: pd.DataFrame, session_row: np.ndarray, item_ids: np.ndarray, first_session_id: int
) -> list[RankingRequest]:
    # Candidates arrive grouped by session (draw_candidates' contract): split at the changes.
    bounds = np.flatnonzero(np.diff(session_row)) + 1
    slates = np.split(item_ids, bounds)
    rows = sessions.iloc[np.unique(session_row)]
    return [
        RankingRequest(
            session_id=first_session_id + int(row.session_id),
            ts=row.ts,
            user_id=int(row.user_id),
            device=row.device,
            region=row.region,
            query_category=row.query_category,
            candidates=slate.astype(np.int64),
        )
        for row, slate in zip(rows.itertuples(index=False), slates, strict=True)
    ]


def _shown(
    session_row: np.ndarray,
    item_ids: np.ndarray,
    truth: pd.DataFrame,
    served: Sequence[ServedRanking],
    context: pd.DataFrame,
) -> pd.DataFrame:
    """Every candidate with the position it was shown at (1 = top), whether that position
    was randomised, and where the ranking itself had put it; ``truth`` is row-aligned."""
    shown = pd.DataFrame(
        {
            schema.SESSION_ID: session_row,
            schema.ITEM_ID: item_ids,
            schema.DEVICE: context[schema.DEVICE].to_numpy(),
        }
    )
    shown = pd.concat([shown, truth.reset_index(drop=True)], axis=1)
    sessions_with_slates = np.unique(session_row)
    positions = pd.concat(
        [
            _positions(session, answer)
            for session, answer in zip(sessions_with_slates, served, strict=True)
        ],
        ignore_index=True,
    )
    merged = shown.merge(positions, on=[schema.SESSION_ID, schema.ITEM_ID], how="left")
    if merged[schema.POSITION].isna().any():
        raise RuntimeError("a ranking answer left out candidates it was sent")
    return merged.astype({schema.POSITION: "int64", schema.POLICY_POSITION: "int64"})


def _positions(session: int, answer: ServedRanking) -> pd.DataFrame:
    position = np.arange(1, len(answer.order) + 1)
    if answer.policy_order is None:
        policy_position = position
    else:
        rank = {int(item): p for p, item in enumerate(answer.policy_order, start=1)}
        policy_position = np.array([rank[int(item)] for item in answer.order])
    return pd.DataFrame(
        {
            schema.SESSION_ID: session,
            schema.ITEM_ID: answer.order,
            schema.POSITION: position,
            schema.RANDOMIZED: position <= answer.randomized_top_k,
            schema.POLICY_POSITION: policy_position,
            REQUEST_ID: answer.request_id,
        }
    )


def _with_global_ids(
    sessions: pd.DataFrame,
    shown: pd.DataFrame,
    clicks: pd.DataFrame,
    served: Sequence[ServedRanking],
    first_session_id: int,
) -> _Day:
    request_of = shown.drop_duplicates(schema.SESSION_ID).set_index(schema.SESSION_ID)[REQUEST_ID]
    answer_of = {answer.request_id: answer for answer in served}
    requests = sessions[sessions[schema.SESSION_ID].isin(request_of.index)].copy()
    requests[REQUEST_ID] = request_of.loc[requests[schema.SESSION_ID]].to_numpy()
    requests["served_by"] = [answer_of[r].served_by for r in requests[REQUEST_ID]]
    requests["model_version"] = [answer_of[r].model_version for r in requests[REQUEST_ID]]
    clicks = clicks.assign(**{REQUEST_ID: request_of.loc[clicks[schema.SESSION_ID]].to_numpy()})
    for frame in (requests, shown, clicks):
        frame[schema.SESSION_ID] += first_session_id
    shown = shown.sort_values([schema.SESSION_ID, schema.POSITION], ignore_index=True)
    return _Day(
        requests=requests.reset_index(drop=True),
        impressions=shown.drop(columns=[schema.DEVICE]),
        clicks=clicks,
    )


def _ledger(
    days: list[_Day], items: pd.DataFrame, plan: TrafficPlan, start: pd.Timestamp
) -> Traffic:
    requests = pd.concat([d.requests for d in days], ignore_index=True)
    change_at = start + pd.Timedelta(days=plan.change_day)
    requests[SCENARIO_ACTIVE] = requests[TS] >= change_at
    return Traffic(
        requests=requests,
        impressions=pd.concat([d.impressions for d in days], ignore_index=True),
        clicks=pd.concat([d.clicks for d in days], ignore_index=True),
        items=items,
        meta={
            "scenario": plan.scenario.describe(),
            "days": plan.days,
            "change_day": plan.change_day,
            "seed": plan.seed,
            "start": start.isoformat(),
            "change_at": change_at.isoformat(),
            "end": (start + pd.Timedelta(days=plan.days)).isoformat(),
        },
    )
