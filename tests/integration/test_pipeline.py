"""The Dagster graph, materialised for real at a tiny scale: real Feast, MLflow and torch."""

from __future__ import annotations

import dagster as dg
import mlflow
import pytest

from features.events import write_raw
from models.gate import GATE_ARTIFACTS
from models.model_card import MODEL_CARD_ARTIFACTS
from models.registry import Registry
from pipelines.definitions import build_definitions
from ranklab.schema import RAW_TABLES
from simulation.generator import generate_marketplace
from simulation.world import publish

pytestmark = pytest.mark.integration


def _execute(settings, job: str, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    publish(settings)  # the world writes its marketplace where the pipeline reads it
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        return defs.resolve_job_def(job).execute_in_process(
            instance=instance, run_config=run_config or {}, raise_on_error=False
        )


def _materialised(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.step_materialization_data.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def _check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_definitions_load_with_every_resource_bound(settings):
    defs = build_definitions(settings)
    job = defs.resolve_job_def("lifecycle")
    assert "raw_events" in {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert job is not None  # resolving fails loudly if a resource is missing


@pytest.mark.slow
def test_lifecycle_job_runs_end_to_end_and_promotes_the_first_candidate(settings):
    result = _execute(settings, "lifecycle")

    assert result.success
    assert {
        "raw_events",
        "validated_events",
        "training_data",
        "online_features",
        "promotion",
    } <= _materialised(result)
    checks = _check_outcomes(result)
    assert len(checks) >= 8 and all(checks.values()), checks
    assert (settings.raw_dir / "sessions.parquet").exists()
    decision = result.output_for_node("promotion")
    # First run: no champion yet, judged against the baselines only.
    assert decision.decision in {"champion", "challenger", "rejected"}
    assert (settings.reports_dir / "gate" / f"ranker-v{decision.version}.md").exists()
    assert (settings.reports_dir / "model_cards" / f"ranker-v{decision.version}.md").exists()
    # Both documents are in the version's MLflow run, each under its own folder.
    registry = Registry(settings)
    run_id = registry.version(decision.version).run_id
    with registry.activated():
        report = mlflow.artifacts.load_text(
            f"runs:/{run_id}/{GATE_ARTIFACTS}/ranker-v{decision.version}.md"
        )
        card = mlflow.artifacts.load_text(
            f"runs:/{run_id}/{MODEL_CARD_ARTIFACTS}/ranker-v{decision.version}.md"
        )
    assert report.startswith(f"# Promotion gate: ranker v{decision.version} -> ")
    assert "| artifact_scores |" in report
    assert card.startswith("# Model card: ") and "## Gate decision" in card
    champion = Registry(settings).champion_version()
    if decision.decision == "champion":
        assert str(champion.version) == decision.version
    else:  # only the gate moves `champion`: a refused first candidate leaves it unset
        assert champion is None and decision.failures


def test_corrupt_input_is_stopped_by_a_blocking_check_before_anything_is_written(
    settings, tmp_path
):
    tables = generate_marketplace(settings.data)
    tables["items"].loc[tables["items"].index[:3], "price"] = -1.0  # out of range
    tables["sessions"] = tables["sessions"].iloc[[0, *range(len(tables["sessions"]))]]  # dup key
    source = tmp_path / "import"
    write_raw(tables, source)

    result = _execute(
        settings, "features", {"ops": {"raw_events": {"config": {"source_dir": str(source)}}}}
    )

    assert not result.success
    checks = _check_outcomes(result)
    failed = {name for name, ok in checks.items() if not ok}
    assert {"valid_items_schema", "valid_sessions_unique_keys"} <= failed, failed
    assert _materialised(result) == {"raw_events"}
    assert not any((settings.raw_dir / f"{t}.parquet").exists() for t in RAW_TABLES)
    assert not settings.feature_dir.exists()
