"""A/B tests end to end on simulated users, at a small scale: a training set from the real
Feast store, real models, the simulator's clicks, the prediction log, the readout, the report
logged to a real MLflow run.

The known-better challenger here is the popularity ranker against a control that orders
candidates at random: a large true effect, so a few thousand sessions settle it. The
benchmark (``benchmarks/abtest.py``) measures the subtle pair (popularity against the
PyTorch ranker) and the false-positive rate over hundreds of A/A runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import aggregates
from features.store import apply_definitions
from features.training_set import build_training_set
from models import experiment, train
from models.registry import Lineage, Registry
from monitoring.abtest.interleaving import interleaving_result
from monitoring.abtest.readout import ReadoutConfig, read_out
from monitoring.abtest.report import log_to_mlflow, write_report
from ranklab.settings import DataSettings, Settings
from serving.experiment import Arm, ExperimentConfig, bucket
from simulation.abtest import (
    ArmModel,
    reassigned,
    simulate_experiment,
    simulate_interleaving,
)
from simulation.generator import generate_marketplace
from simulation.traffic import TrafficPlan

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = DataSettings(scale=0.3, n_days=28)
PLAN = TrafficPlan(days=2, sessions_per_day=1_000, seed=5)


class RandomOrder:
    """A known-worse ranker: every candidate gets a random score."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.rng.random(len(frame))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("abtest") / "state", data=DATA)
    tables = generate_marketplace(DATA)
    aggregates.write_feature_tables(aggregates.compute_feature_tables(tables), settings)
    training_set = build_training_set(settings, tables, apply_definitions(settings))
    popularity = train.build_models(training_set, seed=0, progress=False)[train.BASELINE]
    popularity.fit(training_set.part("train"))
    return settings, tables, training_set, popularity


def _config(name: str) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        arms=[
            Arm(name="control", model="version:1", weight=1),
            Arm(name="treatment", model="version:2", weight=1),
        ],
    )


def test_a_known_better_challenger_is_detected_and_the_report_lands_in_mlflow(world):
    settings, tables, training_set, popularity = world
    config = _config("better")
    arms = {"control": ArmModel(RandomOrder(0), "1"), "treatment": ArmModel(popularity, "2")}
    run = simulate_experiment(tables, settings, config, arms, PLAN, settings.root / "log-better")
    truth = run.true_effect()
    true_lift = truth["treatment"] / truth["control"] - 1
    assert true_lift > 0.05  # the simulator's ground truth: the challenger is better

    readout = read_out(config.name, run.exposures, run.weights, covariates=run.pre_activity)
    assert readout.decision.verdict == "ship", readout.decision.rule
    assert readout.lift.relative.lo <= true_lift <= readout.lift.relative.hi
    assert readout.cuped_lift.cuped.variance_reduction > 0

    # The report, logged to the MLflow run that trained the treatment.
    registry = Registry(settings)
    evaluation = experiment.evaluate_models(training_set, {"popularity": popularity}, seed=0)
    meta = training_set.metadata
    logged = registry.log_training_run(
        popularity,
        training_set,
        evaluation["popularity"],
        Lineage.of(training_set, meta["feature_views"], meta["feature_service"]),
        params={"model": "popularity"},
    )
    files = write_report(
        readout, run.exposures, settings.root / "report", run.pre_activity, true_lift
    )
    assert "Decision: SHIP" in files.markdown.read_text()
    assert "<img" in files.html.read_text()
    run_id = log_to_mlflow(registry, logged.version, files, config.name)
    logged_files = {
        a.path.rsplit("/", 1)[-1] for a in registry.client.list_artifacts(run_id, "abtest/better")
    }
    assert logged_files == {p.name for p in files.paths}


def test_an_aa_test_does_not_ship_and_a_skewed_split_is_blocked(world):
    settings, tables, _, popularity = world
    config = _config("same")
    same = {"control": ArmModel(popularity, "2"), "treatment": ArmModel(popularity, "2")}
    run = simulate_experiment(tables, settings, config, same, PLAN, settings.root / "log-aa")
    truth = run.true_effect()
    assert truth["control"] == pytest.approx(truth["treatment"])  # same order, same truth
    assert read_out(config.name, run.exposures, run.weights).srm.passed
    # One A/A readout says "ship" or "don't ship" 5% of the time by design, so the test
    # reads 40 A/A experiments on these searches (users hashed with other names: valid
    # because both arms show the same order) and bounds the rate: P(7+ of 40) = 0.3% at 5%.
    decided = [
        read_out(f"same-{i}", reassigned(run.exposures, _config(f"same-{i}")), run.weights,
                 ReadoutConfig(bootstrap=100)).decision.verdict != "inconclusive"
        for i in range(40)
    ]  # fmt: skip
    assert sum(decided) <= 6

    # A broken split: a bug sends the users of bucket [0.5, 0.7) to control too (70/30).
    # (A few hundred users: SRM at p < 0.001 needs a gross skew here; the unit tests show
    # it catching 52/48 at 20,000 users.)
    def skewed(user_id: int) -> str:
        return "control" if bucket(user_id, config.name) < 0.7 else "treatment"

    broken = simulate_experiment(
        tables, settings, config, same, PLAN, settings.root / "log-skewed", assign=skewed
    )
    blocked = read_out(config.name, broken.exposures, broken.weights)
    assert blocked.decision.verdict == "blocked" and blocked.lift is None, blocked.srm


def test_interleaving_credits_the_better_ranker(world):
    settings, tables, _, popularity = world
    run = simulate_interleaving(tables, settings, RandomOrder(1), popularity, PLAN)
    result = interleaving_result(run.credits["clicks_a"], run.credits["clicks_b"])
    assert result.verdict == "ship", result.describe()
    assert result.wins_b > result.wins_a
