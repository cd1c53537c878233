"""Stage 3, models: train every model on the same training set, evaluate them side by side
on the test days, log the candidate to MLflow, and let the gate alone decide `champion`."""

from pathlib import Path

import dagster as dg

from models import experiment, gate, train
from models.evaluation import ModelEvaluation
from models.metrics import PRIMARY_METRIC
from models.model_card import TrainingSummary, write_model_card
from models.registry import Lineage, LoggedRanker
from pipelines.defs.resources import ModelRegistryResource, SettingsResource
from ranklab.schema import TrainingSet


@dg.asset(group_name="models", kinds={"pytorch", "scikitlearn"})
def trained_models(
    context: dg.AssetExecutionContext, training_data: TrainingSet, settings: SettingsResource
) -> dict[str, object]:
    """Popularity, the scikit-learn baseline and the PyTorch ranker (naive and position-
    debiased), all fitted on the train split; the ranker stops early on the valid split."""
    trained = train.train_models(training_data, seed=settings.get().seed, progress=True)
    context.add_output_metadata(
        {f"fit_seconds.{t.name}": round(t.fit_seconds, 2) for t in trained.values()}
        | {"headline": ", ".join(trained)}
    )
    return {name: t.model for name, t in trained.items()}


@dg.asset(group_name="models", kinds={"pandas"})
def model_evaluation(
    context: dg.AssetExecutionContext,
    training_data: TrainingSet,
    trained_models: dict[str, object],
    settings: SettingsResource,
) -> dict[str, ModelEvaluation]:
    """Every model and the oracle on the test days: NDCG/MRR/recall with bootstrap intervals,
    on clicks and on the truth, per slice; the comparison table and plots."""
    cfg = settings.get()
    evaluations = experiment.evaluate_models(training_data, trained_models, seed=cfg.seed)
    table = experiment.comparison_table(evaluations)
    out_dir = cfg.reports_dir / "evaluation"
    experiment.write_comparison(table, out_dir / "comparison.md")
    plots = experiment.write_plots(training_data, trained_models, evaluations, out_dir)
    candidate = train.candidate_name(trained_models)
    context.add_output_metadata(
        {
            "summary": dg.MetadataValue.md(table.to_markdown(index=False)),
            "plots": [str(p) for p in plots],
            # The progress line: the candidate's primary metric, as the table states it.
            "headline": f"{candidate} {PRIMARY_METRIC} (clicks) {evaluations[candidate].primary()}",
        }
    )
    return evaluations


@dg.asset(group_name="models", kinds={"mlflow"})
def candidate_model(
    context: dg.AssetExecutionContext,
    training_data: TrainingSet,
    trained_models: dict[str, object],
    model_evaluation: dict[str, ModelEvaluation],
    model_registry: ModelRegistryResource,
    settings: SettingsResource,
) -> LoggedRanker:
    """The candidate ranker logged to MLflow (params, metrics, slices, plots, lineage) and
    registered as a new version of `ranker`, with no alias: only the gate gives one."""
    name = train.candidate_name(trained_models)
    ranker = trained_models[name]
    # Lineage names what the training set was built from, not whatever the store holds now.
    meta = training_data.metadata
    lineage = Lineage.of(training_data, meta["feature_views"], meta["feature_service"])
    plots = sorted((settings.get().reports_dir / "evaluation").glob("*.png"))
    logged = model_registry.registry().log_training_run(
        ranker,
        training_data,
        model_evaluation[name],
        lineage,
        params=train.describe(ranker),
        artifacts=plots,
    )
    context.add_output_metadata(
        {
            "model": name,
            "version": logged.version,
            "run_id": logged.run_id,
            "headline": f"{name} registered as version {logged.version}",
        }
    )
    return logged


@dg.asset(group_name="models", kinds={"mlflow"})
def promotion(
    context: dg.AssetExecutionContext,
    training_data: TrainingSet,
    trained_models: dict[str, object],
    model_evaluation: dict[str, ModelEvaluation],
    candidate_model: LoggedRanker,
    model_registry: ModelRegistryResource,
    settings: SettingsResource,
) -> gate.GateDecision:
    """The promotion gate: champion only if every check passes, else challenger or rejected,
    with the reasons in MLflow tags, a gate report and the model card."""
    cfg = settings.get()
    registry = model_registry.registry()
    name = train.candidate_name(trained_models)
    decision = gate.promote(
        registry,
        candidate_model.version,
        training_data.part("test"),
        candidate=model_evaluation[name],
        baseline=model_evaluation[train.BASELINE],
    )
    report_md, report_json = gate.write_report(decision, cfg.reports_dir)
    card = write_model_card(
        cfg.reports_dir / "model_cards" / f"ranker-v{candidate_model.version}.md",
        model_name=name,
        version=candidate_model.version,
        evaluation=model_evaluation[name],
        training=TrainingSummary.of(training_data),
        decision=decision,
        references=[e for n, e in model_evaluation.items() if n != name],
    )
    registry.log_artifacts(candidate_model.run_id, [report_md, report_json, card], folder="gate")
    context.add_output_metadata(
        {
            "decision": decision.decision,
            "headline": f"v{candidate_model.version} -> {decision.decision}",
            "brief": gate_brief(decision, report_md),
            "summary": dg.MetadataValue.md(decision.to_markdown()),
            "model_card": dg.MetadataValue.path(str(card)),
        }
    )
    return decision


DETAIL_CHARS = 90  # a check's detail on the terminal; the report has it whole


def gate_brief(decision: gate.GateDecision, report: Path) -> str:
    """The decision in a few terminal lines: one per check, the full report's path last."""
    config = decision.config
    lines = [
        f"gate: {decision.model_name} v{decision.version} -> {decision.decision.upper()}"
        f"{' (FORCED)' if decision.forced else ''}, vs {decision.reference} on "
        f"{decision.n_sessions} test sessions ({config.metric} on {config.gain})"
    ]
    for check in decision.checks:
        short = check.passed and len(check.detail) > DETAIL_CHARS  # a failure is shown whole
        detail = check.detail[: DETAIL_CHARS - 3] + "..." if short else check.detail
        lines.append(f"  {'pass' if check.passed else 'FAIL'}  {check.name:<21} {detail}")
    lines.append(f"  report: {report}")
    return "\n".join(lines)
