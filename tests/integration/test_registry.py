"""The registry and the gate against a real MLflow SQLite registry, with real fitted rankers.

A small synthetic marketplace whose relevance rule differs by device: on desktop the
feature ``f1`` helps, on mobile it hurts. That gives models with known quality:

- ``full``: the listwise ranker on every training session (learns both rules);
- ``weak``: the same ranker seeing ``f0`` only (better than popularity, worse than full);
- ``desktop_only``: trained on desktop sessions only, so it ranks mobile sessions badly;
- ``shuffled``: trained on shuffled labels (a broken pipeline): no better than chance.

The baseline is the popularity ranker on a noisy ``item_popularity`` column, scored on the
same test sessions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from models.evaluation import ModelEvaluation, evaluate
from models.gate import GATE_ARTIFACTS, GateConfig, promote
from models.model_card import TrainingSummary, log_model_card, write_model_card
from models.popularity import PopularityRanker
from models.pyfunc import score
from models.ranker import ListwiseRanker, RankerConfig
from models.registry import CHALLENGER, CHAMPION, Lineage, LoggedRanker, Registry, RegistryError
from ranklab.schema import DEVICE, LABEL, REGION, SESSION_ID, SPLIT, TrainingSet
from ranklab.settings import get_settings

pytestmark = pytest.mark.integration

FEATURES = ["f0", "f1", "is_mobile", "item_popularity"]
N_SESSIONS, ITEMS = 800, 10
# Thresholds sized for 300 test sessions; the latency budget is the default one.
GATE = GateConfig(n_boot=500, min_slice_sessions=40)
TINY = RankerConfig(hidden=(32,), epochs=8, patience=8, batch_sessions=32, dropout=0.0)


def marketplace(seed: int = 0) -> TrainingSet:
    """800 sessions x 10 items; graded labels (0-2) from a device-dependent utility."""
    rng = np.random.default_rng(seed)
    session = np.repeat(np.arange(N_SESSIONS), ITEMS)
    mobile = rng.random(N_SESSIONS)[session] < 0.5
    f0, f1 = rng.normal(size=(2, len(session)))
    utility = f0 + np.where(mobile, -1.0, 1.0) * f1 + rng.normal(0, 0.3, len(session))
    frame = pd.DataFrame(
        {
            SESSION_ID: session,
            "f0": f0,
            "f1": f1,
            "is_mobile": mobile.astype(float),
            "item_popularity": 0.4 * utility + rng.normal(0, 1.0, len(session)),
            LABEL: np.digitize(utility, [1.0, 2.0]),
            SPLIT: np.select([session < 400, session < 500], ["train", "valid"], "test"),
            DEVICE: np.where(mobile, "mobile", "desktop"),
            REGION: np.where(rng.random(N_SESSIONS)[session] < 0.5, "north", "south"),
        }
    )
    return TrainingSet(frame=frame, feature_columns=FEATURES, source="letor")


@pytest.fixture(scope="module")
def data() -> TrainingSet:
    return marketplace()


def fit(data: TrainingSet, name: str, features=FEATURES, rows=None, shuffle=False):
    train, valid = data.part("train"), data.part("valid")
    if rows is not None:
        train, valid = train[rows(train)], valid[rows(valid)]
    if shuffle:
        labels = np.random.default_rng(1).permutation(train[LABEL].to_numpy())
        train = train.assign(**{LABEL: labels})
    ranker = ListwiseRanker(list(features), config=TINY, name=name, progress=False)
    return ranker.fit(train, valid)


@pytest.fixture(scope="module")
def rankers(data) -> dict[str, ListwiseRanker]:
    return {
        "full": fit(data, "full"),
        "weak": fit(data, "weak", features=["f0"]),
        "desktop_only": fit(data, "desktop_only", rows=lambda f: f[DEVICE] == "desktop"),
        "shuffled": fit(data, "shuffled", shuffle=True),
    }


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory) -> Path:
    """A migrated, empty MLflow database: creating one takes seconds, copying it does not."""
    settings = get_settings(state_dir=tmp_path_factory.mktemp("template"))
    Registry(settings).client.search_experiments()  # runs MLflow's schema migrations
    return settings.mlflow_dir / "mlflow.db"


@pytest.fixture
def registry(settings, empty_database) -> Registry:
    """A registry of its own for each test, starting empty."""
    settings.mlflow_dir.mkdir(parents=True)
    shutil.copy(empty_database, settings.mlflow_dir / "mlflow.db")
    return Registry(settings)


def evaluated(data: TrainingSet, scores: np.ndarray, name: str) -> ModelEvaluation:
    return evaluate(data.part("test"), scores, name, [DEVICE, REGION], seed=0, n_boot=200)


@pytest.fixture(scope="module")
def baseline(data) -> ModelEvaluation:
    popularity = PopularityRanker(FEATURES, column="item_popularity").fit(data.part("train"))
    return evaluated(data, popularity.predict(data.part("test")), popularity.name)


def register(registry: Registry, data: TrainingSet, ranker: ListwiseRanker):
    evaluation = evaluated(data, ranker.predict(data.part("test")), ranker.name)
    lineage = Lineage.of(data, feature_views=["item_stats"], feature_service="ranker_v1")
    logged = registry.log_training_run(
        ranker, data, evaluation, lineage, params={"epochs": TINY.epochs}
    )
    return logged, evaluation


def gate(registry, data, baseline, logged: LoggedRanker, evaluation, **options):
    return promote(
        registry, logged.version, data.part("test"), evaluation, baseline, GATE, **options
    )


def register_and_gate(registry, data, baseline, ranker, **options):
    logged, evaluation = register(registry, data, ranker)
    return logged, gate(registry, data, baseline, logged, evaluation, **options)


# ---- the gate ----------------------------------------------------------------------------------


def test_the_first_run_is_judged_against_the_baseline_and_becomes_champion(
    registry, data, baseline, rankers
):
    logged, evaluation = register(registry, data, rankers["full"])
    decision = gate(registry, data, baseline, logged, evaluation)

    assert decision.decision == "champion", decision.to_markdown()
    assert decision.reference == "the baseline only"
    assert [c.name for c in decision.checks] == [
        "artifact_scores",
        "latency_budget",
        "champion_comparable",
        "beats_baseline",
        "no_slice_regression",
    ]
    assert str(registry.champion_version().version) == logged.version == "1"
    assert registry.champion_history() == ["1"]
    report = registry.settings.reports_dir / "gate" / "ranker-v1.md"
    assert "-> CHAMPION" in report.read_text()
    assert json.loads(report.with_suffix(".json").read_text())["decision"] == "champion"
    gate_files = {f.path for f in registry.client.list_artifacts(logged.run_id, "gate")}
    assert gate_files == {"gate/ranker-v1.md", "gate/ranker-v1.json"}


def test_the_model_card_is_written_after_the_gate_and_logged_with_the_run(
    registry, data, baseline, rankers
):
    logged, evaluation = register(registry, data, rankers["full"])
    decision = gate(registry, data, baseline, logged, evaluation)

    card = write_model_card(
        registry.settings.reports_dir / "model_card.md",
        model_name="ranker",
        version=logged.version,
        evaluation=evaluation,
        training=TrainingSummary.of(data),
        decision=decision,
        references=[baseline],
    )
    registry.log_artifacts(logged.run_id, [card])

    text = card.read_text()
    assert "## Gate decision: **champion**" in text
    assert str(evaluation.primary()).split(" (n=")[0] in text
    assert str(baseline.primary()).split(" (n=")[0] in text
    assert "model_card.md" in {f.path for f in registry.client.list_artifacts(logged.run_id)}


def test_the_gate_report_and_the_model_card_both_stay_in_the_run_under_their_own_names(
    registry, data, baseline, rankers, tmp_path
):
    """Both are ranker-v<N>.md: logged into one folder, the card replaced the report."""
    logged, evaluation = register(registry, data, rankers["full"])
    decision = gate(registry, data, baseline, logged, evaluation)
    card = write_model_card(
        registry.settings.reports_dir / "model_cards" / f"ranker-v{logged.version}.md",
        model_name="ranker",
        version=logged.version,
        evaluation=evaluation,
        training=TrainingSummary.of(data),
        decision=decision,
        references=[baseline],
    )
    card_path = log_model_card(registry, logged.run_id, card)

    with registry.activated():
        report_file = mlflow.artifacts.download_artifacts(
            run_id=logged.run_id,
            artifact_path=f"{GATE_ARTIFACTS}/ranker-v{logged.version}.md",
            dst_path=str(tmp_path / "report"),
        )
        card_file = mlflow.artifacts.download_artifacts(
            run_id=logged.run_id, artifact_path=card_path, dst_path=str(tmp_path / "card")
        )
    report_text, card_text = Path(report_file).read_text(), Path(card_file).read_text()
    assert report_text == decision.to_markdown()
    assert report_text.startswith(f"# Promotion gate: ranker v{logged.version} -> CHAMPION")
    assert card_text.startswith(f"# Model card: ranker v{logged.version}")
    assert "## Gate decision: **champion**" in card_text


def test_loading_the_champion_scores_a_frame_like_the_trained_model(
    registry, data, baseline, rankers
):
    register_and_gate(registry, data, baseline, rankers["full"])
    test = data.part("test")

    with registry.activated():  # what serving does: a plain MLflow URI
        champion = mlflow.pyfunc.load_model("models:/ranker@champion")
    scores = score(champion, test)

    np.testing.assert_allclose(scores, rankers["full"].predict(test), rtol=1e-6)
    assert champion.metadata.get_input_schema().input_names() == [SESSION_ID, *FEATURES]


def test_a_frame_missing_a_feature_column_gets_a_clear_error(registry, data, baseline, rankers):
    register_and_gate(registry, data, baseline, rankers["full"])
    champion = registry.load(CHAMPION)
    without_f1 = data.part("test").drop(columns="f1")

    with pytest.raises(KeyError, match=r"lacks feature columns \['f1'\]"):
        score(champion, without_f1)
    with pytest.raises(MlflowException, match=r"missing inputs \['f1'\]"):
        champion.predict(without_f1[[SESSION_ID, "f0", "is_mobile", "item_popularity"]])


def test_a_candidate_trained_on_shuffled_labels_does_not_move_the_champion(
    registry, data, baseline, rankers
):
    register_and_gate(registry, data, baseline, rankers["full"])

    degraded, decision = register_and_gate(registry, data, baseline, rankers["shuffled"])

    assert decision.decision == "rejected"
    failed = {c.name for c in decision.failures}
    assert {"beats_baseline", "no_loss_vs_champion", "min_gain_vs_champion"} <= failed
    assert str(registry.champion_version().version) == "1"
    tags = registry.version(degraded.version).tags
    assert tags["gate.decision"] == "rejected"
    assert tags["gate.check.beats_baseline"].startswith("FAIL: candidate - baseline")
    assert CHALLENGER not in registry.aliases()


def test_a_candidate_that_hurts_one_slice_is_blocked_and_the_report_names_it(
    registry, data, baseline, rankers
):
    register_and_gate(registry, data, baseline, rankers["full"])

    logged, decision = register_and_gate(registry, data, baseline, rankers["desktop_only"])

    assert decision.decision == "challenger", decision.to_markdown()
    slices = next(c for c in decision.checks if c.name == "no_slice_regression")
    assert not slices.passed
    assert "device=mobile" in slices.detail
    assert "device=desktop" not in slices.detail
    assert registry.aliases() == {CHAMPION: "1", CHALLENGER: logged.version}
    report = (registry.settings.reports_dir / "gate" / f"ranker-v{logged.version}.md").read_text()
    assert "device=mobile" in report


def test_a_better_candidate_replaces_the_champion(registry, data, baseline, rankers):
    register_and_gate(registry, data, baseline, rankers["weak"])

    logged, decision = register_and_gate(registry, data, baseline, rankers["full"])

    assert decision.decision == "champion", decision.to_markdown()
    assert decision.reference == "champion v1 and the baseline"
    assert registry.aliases() == {CHAMPION: "2", "previous_champion": "1"}
    assert registry.champion_history() == ["1", "2"]
    assert "champion.retired_at" in registry.version("1").tags


def test_a_forced_promotion_is_audited(registry, data, baseline, rankers):
    register_and_gate(registry, data, baseline, rankers["full"])
    logged, evaluation = register(registry, data, rankers["shuffled"])

    with pytest.raises(ValueError, match="forced promotion needs a reason"):
        gate(registry, data, baseline, logged, evaluation, force=True, reason=" ")
    assert "gate.decision" not in registry.version(logged.version).tags  # nothing recorded

    decision = gate(
        registry, data, baseline, logged, evaluation, force=True, reason="incident 42 hotfix"
    )

    assert decision.decision == "champion" and decision.failures  # checks still ran
    tags = registry.version(logged.version).tags
    assert tags["gate.forced"] == "true"
    assert tags["gate.force_reason"] == "incident 42 hotfix"
    assert tags["champion.promoted_by"] == decision.decided_by
    assert "gate.check.beats_baseline" in tags
    assert str(registry.champion_version().version) == logged.version


def test_rollback_restores_the_previous_champion_and_records_why(registry, data, baseline, rankers):
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("nothing to roll back yet")
    register_and_gate(registry, data, baseline, rankers["weak"])
    register_and_gate(registry, data, baseline, rankers["full"])

    restored = registry.rollback("v2 raises serving errors")

    assert str(restored.version) == "1"
    assert registry.aliases() == {CHAMPION: "1"}
    assert registry.version("2").tags["champion.rollback_reason"] == "v2 raises serving errors"
    assert registry.version("1").tags["champion.restore_reason"] == "v2 raises serving errors"
    with pytest.raises(RegistryError, match="no previous champion to restore"):
        registry.rollback("again")


def test_only_the_gate_and_rollback_move_the_champion(registry, data, rankers):
    logged, _ = register(registry, data, rankers["full"])

    with pytest.raises(RegistryError, match="moved only by the promotion gate"):
        registry.set_alias(CHAMPION, logged.version)


# ---- what a training run records ---------------------------------------------------------------


def test_a_training_run_records_metrics_files_and_lineage(registry, data, rankers):
    logged, evaluation = register(registry, data, rankers["full"])

    run = registry.client.get_run(logged.run_id)
    mobile = evaluation.slices.set_index(["slice", "value"]).loc[(DEVICE, "mobile"), "mean"]
    assert run.data.metrics["test.ndcg_at_10"] == pytest.approx(evaluation.primary().mean)
    assert run.data.metrics["slice.device_mobile.ndcg_at_10"] == pytest.approx(mobile)
    assert run.data.params["epochs"] == str(TINY.epochs)
    files = {f.path for f in registry.client.list_artifacts(logged.run_id, "evaluation")}
    assert files == {"evaluation/test.json", "evaluation/test_slices.csv"}
    tags = registry.version(logged.version).tags
    assert tags["lineage.feature_service"] == "ranker_v1"
    assert tags["lineage.training_rows"] == str(len(data.part("train")))
    assert len(tags["lineage.data_hash"]) == 16
    experiment = registry.client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == registry.settings.mlflow_artifact_location


def test_the_gate_records_the_digest_serving_verifies_even_after_mlflow_loads_the_model(
    registry, data, baseline, rankers, tmp_path
):
    """Loading by a models:/ URI makes MLflow write a file into a local store's model folder;
    the champion must still verify (it did not, before that file was left out)."""
    from serving.champion import ChampionLoader, ModelDiskCache

    logged, evaluation = register(registry, data, rankers["full"])
    gate(registry, data, baseline, logged, evaluation)
    registry.load(logged.version)  # what the gate's champion comparison and the drills do
    recorded = registry.artifact_digest(logged.version)

    loader = ChampionLoader(registry, ModelDiskCache(tmp_path / "cache"), check=lambda m: None)
    served = loader.load_version(logged.version)
    assert recorded is not None and served.digest == recorded
    assert served.ranker is not None and served.pyfunc is None  # the code-free form
