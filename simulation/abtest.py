"""Experiments on simulated users, in process: an A/B split, or team-draft interleaving.

The traffic simulator (``simulation/traffic.py``) draws each day's searches from the
generator and lets its users click on what they were shown, under the click model and the
ground truth. Here the ranking client is an experiment:

- ``ExperimentRanking`` assigns each request's user with ``serving.experiment.assign_arm``
  (the service's own hash), ranks with that arm's model and writes a prediction-log row
  with ``experiment`` and ``experiment_arm``, as the service does. It also ranks every
  request with the other arms' models (the shadow orders, never shown): with the ledger's
  true utilities they give each arm's *expected* clicks on the same searches, the true
  effect the readout should find (``true_effect``);
- ``InterleavingRanking`` ranks with both models and shows their team-draft interleaving,
  remembering which team put each item in the list.

The readout then reads only the prediction log and the clicks (``exposures.py``), as it
would in production.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.registry import Registry
from models.scorers import RegisteredScorer, Scorer
from monitoring.abtest.commands import (
    CONFIG_FILE,
    read_and_report,
    readout_config_of,
    run_dir,
)
from monitoring.abtest.exposures import ARM, exposures_from_log, pre_period_activity
from monitoring.abtest.interleaving import TEAM_A, TEAM_B, credit_sessions, team_draft
from monitoring.abtest.readout import Readout
from monitoring.abtest.report import ReportFiles
from ranklab import schema
from ranklab.io import write_parquet
from ranklab.settings import DataSettings, Settings
from serving.arms import resolve_arms
from serving.experiment import ExperimentConfig, assign_arm, save_experiment
from serving.prediction_log import PredictionLog, PredictionRecord, read_predictions
from simulation.click_model import ClickModel
from simulation.clients import SnapshotFeatures, logged_request
from simulation.traffic import (
    RankingRequest,
    ServedRanking,
    Traffic,
    TrafficPlan,
    simulate_traffic,
    world_traffic_dir,
)
from simulation.truth import TRUE_UTILITY
from simulation.world import load_world

SERVED_BY_MODEL = "model"


@dataclass(frozen=True)
class ArmModel:
    """What serves an arm in a simulation: a scorer and the version it logs."""

    scorer: Scorer
    version: str


# ---- the A/B client ----
class ExperimentRanking:
    """The service's request path with an experiment running, without HTTP.

    ``assign`` replaces the hash (tests break the assignment on purpose with it); by default
    it is ``assign_arm(user_id, config)``.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        arms: Mapping[str, ArmModel],
        log_root: Path,
        settings: Settings,
        assign: Callable[[int], str] | None = None,
    ) -> None:
        missing = [arm.name for arm in config.arms if arm.name not in arms]
        if missing:
            raise ValueError(f"ExperimentRanking: no model for arms {missing}")
        self.config = config
        self.arms = dict(arms)
        self.assign = assign or (lambda user_id: assign_arm(user_id, config))
        self.features = SnapshotFeatures(settings)
        self.log = PredictionLog(Path(log_root)).start()
        self.shadow_orders: list[pd.DataFrame] = []  # request_id, arm, item_id, position

    def start_day(self, day: pd.Timestamp, feature_tables: Mapping[str, pd.DataFrame]) -> None:
        self.features.load(feature_tables)

    def rank(self, requests: Sequence[RankingRequest]) -> list[ServedRanking]:
        served_arm = [self.assign(r.user_id) for r in requests]
        orders: dict[str, list[np.ndarray]] = {}
        latency: dict[str, float] = {}
        for arm, model in self.arms.items():
            # Every arm ranks every request: the arm's own requests are served, the others
            # are shadow orders for the ground truth. The latency is the arm's own cost.
            started = time.perf_counter()
            orders[arm] = _rank_all(self.features, model.scorer, requests)
            latency[arm] = (time.perf_counter() - started) * 1e3 / max(len(requests), 1)
        answers = []
        for i, (request, arm) in enumerate(zip(requests, served_arm, strict=True)):
            request_id = f"sim-{request.session_id}"
            order = orders[arm][i]
            self.log.append(self._record(request, request_id, arm, order, latency[arm]))
            answers.append(
                ServedRanking(request_id, order, SERVED_BY_MODEL, self.arms[arm].version)
            )
        self.shadow_orders.append(_orders_frame(requests, orders))
        return answers

    def _record(
        self, request: RankingRequest, request_id: str, arm: str, order: np.ndarray, ms: float
    ) -> PredictionRecord:
        # Scores in candidate order, as the service logs them: rank 1 scores highest.
        rank_of = {int(item): rank for rank, item in enumerate(order)}
        scores = np.array([-rank_of[int(c)] for c in request.candidates], dtype=float)
        return logged_request(
            request,
            request_id,
            scores=scores,
            k=len(order),
            model_name="ranker",
            model_version=self.arms[arm].version,
            served_by=SERVED_BY_MODEL,
            latency_ms=ms,
            cold_user=False,
            cold_items=[],
            experiment=self.config.name,
            experiment_arm=arm,
        )

    def close(self) -> None:
        self.log.close()


def _rank_all(
    features: SnapshotFeatures, scorer: Scorer, requests: Sequence[RankingRequest]
) -> list[np.ndarray]:
    """Each request's candidates ordered by ``scorer``, best first (ties keep their order)."""
    batch = features.lookup(requests)
    session_ids = np.array([r.session_id for r in requests])[batch.request_index]
    scores = np.asarray(
        scorer.predict(batch.features.assign(**{schema.SESSION_ID: session_ids})), dtype=float
    )
    if scores.shape != (len(batch.features),) or not np.isfinite(scores).all():
        raise ValueError(f"a scorer returned {scores.shape} scores (or non-finite ones)")
    bounds = np.flatnonzero(np.diff(batch.request_index)) + 1
    return [
        request.candidates[np.argsort(-slate, kind="stable")]
        for request, slate in zip(requests, np.split(scores, bounds), strict=True)
    ]


def _orders_frame(
    requests: Sequence[RankingRequest], orders: Mapping[str, list[np.ndarray]]
) -> pd.DataFrame:
    frames = []
    for arm, per_request in orders.items():
        sizes = [len(o) for o in per_request]
        frames.append(
            pd.DataFrame(
                {
                    "request_id": np.repeat([f"sim-{r.session_id}" for r in requests], sizes),
                    ARM: arm,
                    schema.ITEM_ID: np.concatenate(per_request),
                    schema.POSITION: np.concatenate([np.arange(1, n + 1) for n in sizes]),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@dataclass
class ExperimentRun:
    """A simulated A/B test: the ledger, the exposures the readout reads, the shadow orders,
    and the users' activity before the experiment (CUPED's covariates)."""

    config: ExperimentConfig
    traffic: Traffic
    exposures: pd.DataFrame
    shadow_orders: pd.DataFrame
    pre_activity: pd.DataFrame

    @property
    def weights(self) -> dict[str, float]:
        return {arm.name: arm.weight for arm in self.config.arms}

    def true_effect(self, click_model: ClickModel | None = None) -> dict[str, float]:
        """Expected clicks per session if every request had been served by each arm: the
        ground truth the readout's estimate is judged against."""
        expected = expected_clicks(self.traffic, self.shadow_orders, click_model or ClickModel())
        return expected.groupby(ARM)["expected_clicks"].mean().to_dict()


def expected_clicks(
    traffic: Traffic, orders: pd.DataFrame, click_model: ClickModel
) -> pd.DataFrame:
    """Per (request, arm): the expected clicks of the arm's order, from the true utilities
    the ledger recorded and the click model (examination x attraction, summed)."""
    truth = traffic.impressions[["request_id", schema.ITEM_ID, TRUE_UTILITY]]
    device = traffic.requests.set_index("request_id")[schema.DEVICE]
    rows = orders.merge(truth, on=["request_id", schema.ITEM_ID], how="inner", validate="m:1")
    rows["p"] = click_model.click_probability(
        rows[TRUE_UTILITY].to_numpy(),
        rows[schema.POSITION].to_numpy(),
        device.loc[rows["request_id"]].to_numpy(),
    )
    out = rows.groupby(["request_id", ARM], sort=False)["p"].sum().rename("expected_clicks")
    return out.reset_index()


def potential_clicks(run: ExperimentRun, click_model: ClickModel, seed: int) -> pd.DataFrame:
    """Per request, the clicks it got or would have got under each arm: the observed clicks
    for the arm that served it, and for every other arm a draw from the click model on that
    arm's shadow order (the same true utilities). Columns: request_id, user_id, ts, shown,
    then one ``clicks_<arm>`` per arm.

    What this is for: re-running the experiment with fresh assignments (other salts) on the
    same searches, so a measurement of power is not tied to one lucky or unlucky split. The
    counterfactual draws ignore one thing: the clicks of other days feed the features, and
    those came from the traffic as it was actually served."""
    rng = np.random.default_rng(seed)
    truth = run.traffic.impressions[["request_id", schema.ITEM_ID, TRUE_UTILITY]]
    device = run.traffic.requests.set_index("request_id")[schema.DEVICE]
    rows = run.shadow_orders.merge(truth, on=["request_id", schema.ITEM_ID], validate="m:1")
    p = click_model.click_probability(
        rows[TRUE_UTILITY].to_numpy(),
        rows[schema.POSITION].to_numpy(),
        device.loc[rows["request_id"]].to_numpy(),
    )
    rows["clicked"] = rng.random(len(rows)) < p
    drawn = rows.pivot_table(index="request_id", columns=ARM, values="clicked", aggfunc="sum")
    out = run.exposures[["request_id", schema.USER_ID, "ts", "shown", ARM, "clicks"]].copy()
    for arm in drawn.columns:
        counterfactual = drawn[arm].reindex(out["request_id"]).to_numpy()
        out[f"clicks_{arm}"] = np.where(out[ARM] == arm, out["clicks"], counterfactual)
    return out.drop(columns=[ARM, "clicks"]).astype({f"clicks_{a}": "int64" for a in drawn.columns})


def simulate_experiment(
    tables: Mapping[str, pd.DataFrame],
    settings: Settings,
    config: ExperimentConfig,
    arms: Mapping[str, ArmModel],
    plan: TrafficPlan,
    log_root: Path,
    data: DataSettings | None = None,
    assign: Callable[[int], str] | None = None,
) -> ExperimentRun:
    """Run ``config`` on ``plan``'s simulated days after the training window of ``tables``;
    the prediction log goes to ``log_root``, which must be empty (a second run into the
    same log would count every request twice)."""
    if Path(log_root).exists() and any(Path(log_root).iterdir()):
        raise FileExistsError(f"the prediction log {log_root} is not empty: use a new folder")
    client = ExperimentRanking(config, arms, log_root, settings, assign=assign)
    traffic = simulate_traffic(tables, data or settings.data, plan, client)
    exposures = exposures_from_log(read_predictions(log_root), traffic.clicks, config.name)
    return ExperimentRun(
        config=config,
        traffic=traffic,
        exposures=exposures,
        shadow_orders=pd.concat(client.shadow_orders, ignore_index=True),
        pre_activity=pre_period_activity(tables, before=traffic.start),
    )


def reassigned(exposures: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """The exposures with each user's arm drawn again by ``config`` (another name: another
    salt). Valid only for an A/A test: when both arms serve the same model, what a user saw
    does not depend on the arm, so this is a fresh A/A experiment on the same searches."""
    users = exposures[schema.USER_ID].unique()
    arm_of = {int(u): assign_arm(int(u), config) for u in users}
    return exposures.assign(**{ARM: exposures[schema.USER_ID].map(arm_of).to_numpy()})


# ---- interleaving ----
class InterleavingRanking:
    """Shows each request the team-draft interleaving of control (A) and treatment (B)."""

    def __init__(self, control: Scorer, treatment: Scorer, settings: Settings, seed: int = 0):
        self.models = {TEAM_A: control, TEAM_B: treatment}
        self.features = SnapshotFeatures(settings)
        self.seed = seed
        self.teams: list[pd.DataFrame] = []  # request_id, item_id, team

    def start_day(self, day: pd.Timestamp, feature_tables: Mapping[str, pd.DataFrame]) -> None:
        self.features.load(feature_tables)

    def rank(self, requests: Sequence[RankingRequest]) -> list[ServedRanking]:
        a = _rank_all(self.features, self.models[TEAM_A], requests)
        b = _rank_all(self.features, self.models[TEAM_B], requests)
        answers = []
        for request, order_a, order_b in zip(requests, a, b, strict=True):
            # One coin stream per request: the interleaving does not depend on batching.
            rng = np.random.default_rng([self.seed, request.session_id])
            shown, teams = team_draft(order_a, order_b, rng)
            request_id = f"sim-{request.session_id}"
            self.teams.append(
                pd.DataFrame({"request_id": request_id, schema.ITEM_ID: shown, "team": teams})
            )
            answers.append(ServedRanking(request_id, shown, SERVED_BY_MODEL, "interleaved"))
        return answers

    def close(self) -> None:
        pass


@dataclass
class InterleavingRun:
    traffic: Traffic
    credits: pd.DataFrame  # request_id, clicks_a, clicks_b (plus ts, user_id)


def simulate_interleaving(
    tables: Mapping[str, pd.DataFrame],
    settings: Settings,
    control: Scorer,
    treatment: Scorer,
    plan: TrafficPlan,
    data: DataSettings | None = None,
) -> InterleavingRun:
    client = InterleavingRanking(control, treatment, settings, seed=plan.seed)
    traffic = simulate_traffic(tables, data or settings.data, plan, client)
    credits = credit_sessions(pd.concat(client.teams, ignore_index=True), traffic.clicks)
    when = traffic.requests.set_index("request_id")[["ts", schema.USER_ID]]
    credits = credits.join(when, on="request_id")
    return InterleavingRun(traffic, credits.sort_values("ts", ignore_index=True))


# ---- the CLI's `abtest simulate`: an experiment on simulated users, then its readout ----
@dataclass(frozen=True)
class SimulationResult:
    readout: Readout
    files: ReportFiles
    true_clicks_per_session: dict[str, float]
    versions: dict[str, str]
    run_dir: Path
    mlflow_run_id: str | None


def simulate(
    settings: Settings,
    config: ExperimentConfig,
    days: int,
    sessions_per_day: float | None,
    seed: int = 0,
    cuped: bool = False,
    log_to_registry: bool = True,
) -> SimulationResult:
    """Run ``config`` on simulated users with the registry's models, then read it out."""
    run = run_dir(settings, config.name)
    if run.exists() and any(run.iterdir()):
        raise FileExistsError(
            f"a simulated experiment {config.name!r} exists at {run}: pick another name"
        )
    registry = Registry(settings)
    versions = resolve_arms(registry, config)  # fails before anything is simulated
    arms = {name: ArmModel(RegisteredScorer(registry, v), v) for name, v in versions.items()}
    plan = TrafficPlan(days=days, sessions_per_day=sessions_per_day, seed=seed)
    tables = load_world(settings)
    result = simulate_experiment(tables, settings, config, arms, plan, run / "predictions")
    result.traffic.save(run, world_traffic_dir(settings, run.name))
    save_experiment(config, run / CONFIG_FILE)
    write_parquet(result.pre_activity, run / "pre_activity.parquet")
    truth = result.true_effect()
    readout_config = readout_config_of(config, "clicks_per_session", cuped)
    readout, files, run_id = read_and_report(
        settings, config, result.exposures, result.pre_activity, readout_config,
        run / "report", log_to_registry, truth,
    )  # fmt: skip
    return SimulationResult(readout, files, truth, versions, run, run_id)


def describe(result: SimulationResult) -> str:
    readout = result.readout
    lines = [
        f"arms: {result.versions} (registry versions)",
        "true clicks per session: "
        + json.dumps({k: round(v, 4) for k, v in result.true_clicks_per_session.items()}),
        f"decision: {readout.decision.verdict.upper()} ({readout.decision.rule})",
        f"report: {result.files.markdown} and {result.files.html.name}",
    ]
    if readout.lift is not None:
        lines.insert(
            2, f"lift: {readout.lift.relative.fmt(percent=True)} (p={readout.lift.p_value:.3g})"
        )
    if result.mlflow_run_id:
        lines.append(f"logged to MLflow run {result.mlflow_run_id} under abtest/")
    return "\n".join(lines)
