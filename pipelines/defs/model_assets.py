"""Stage 3, models: estimate position bias from the logs, train every model on the same
training set, choose the candidate by the debiased metric on the valid days, evaluate them side
by side on the test days, log the candidate to MLflow, and let the gate alone decide
`champion`."""

from pathlib import Path

import dagster as dg

from models import debiasing, experiment, gate, train
from models.evaluation import ModelEvaluation, decision_gain
from models.metrics import PRIMARY_METRIC
from models.model_card import TrainingSummary, log_model_card, write_model_card
from models.propensity import POOLED
from models.registry import Lineage, LoggedRanker
from pipelines.defs.resources import ModelRegistryResource, SettingsResource
from ranklab.io import write_json, write_parquet, write_text
from ranklab.schema import TrainingSet


@dg.asset(group_name="models", kinds={"pandas"})
def debiased_training_data(
    context: dg.AssetExecutionContext, training_data: TrainingSet, settings: SettingsResource
) -> TrainingSet:
    """The training set with ``label_ipw``: each label over its examination propensity, the
    curve estimated from the randomised sessions of the train days (``models/debiasing.py``).
    Data without randomised positions (LETOR) passes through unchanged."""
    cfg = settings.get()
    ts, curve = debiasing.with_debiased_label(training_data, cfg.position_bias, seed=cfg.seed)
    if curve is None:
        context.add_output_metadata({"debiased": False, "reason": "no randomised positions"})
        return ts
    out_dir = cfg.reports_dir / "position_bias"
    write_json(curve.to_dict(), out_dir / "curve.json")
    write_text(curve.to_markdown(), out_dir / "curve.md")
    pooled = curve.curve(POOLED).eta
    etas = ", ".join(  # the exponent IPW uses: a device with too few sessions uses the pooled
        f"{c.device} {pooled:.2f} (pooled)" if c.source == "pooled" else f"{c.device} {c.eta:.2f}"
        for c in curve.devices
        if c.device != POOLED
    )
    context.add_output_metadata(
        {
            "debiased": True,
            "curve": dg.MetadataValue.md(curve.to_markdown()),
            "headline": f"examination curve p^-eta from the randomised sessions: {etas}",
        }
    )
    return ts


@dg.asset(group_name="models", kinds={"pytorch", "scikitlearn"})
def trained_models(
    context: dg.AssetExecutionContext,
    debiased_training_data: TrainingSet,
    settings: SettingsResource,
) -> dict[str, object]:
    """Popularity, the scikit-learn baseline and the PyTorch ranker (naive and position-
    debiased), all fitted on the train split; the ranker stops early on the valid split.
    The candidate is the ranker best on the valid days by the debiased metric."""
    ts = debiased_training_data
    trained = train.train_models(ts, seed=settings.get().seed, progress=True)
    models = {name: t.model for name, t in trained.items()}
    valid = ts.part("valid")
    context.add_output_metadata(
        {f"fit_seconds.{t.name}": round(t.fit_seconds, 2) for t in trained.values()}
        | {
            f"valid.{decision_gain(valid)}.{name}": round(value, 4)
            for name, value in train.validation_scores(models, valid).items()
        }
        | {"candidate": (candidate := train.choose_candidate(models, valid))}
        | {"headline": f"{', '.join(trained)}; candidate {candidate} (best on the valid days)"}
    )
    return models


@dg.asset(group_name="models", kinds={"pandas"})
def model_evaluation(
    context: dg.AssetExecutionContext,
    debiased_training_data: TrainingSet,
    trained_models: dict[str, object],
    settings: SettingsResource,
) -> dict[str, ModelEvaluation]:
    """Every model on the test days: NDCG/MRR/recall with bootstrap intervals, on the
    debiased label and on the clicks as logged, per slice; the comparison table, its JSON,
    the plots, and each model's scores of the test rows (for graders outside the system)."""
    cfg = settings.get()
    ts = debiased_training_data
    evaluations = experiment.evaluate_models(ts, trained_models, seed=cfg.seed)
    table = experiment.comparison_table(evaluations)
    out_dir = cfg.reports_dir / "evaluation"
    experiment.write_comparison(table, out_dir / "comparison.md")
    write_json(experiment.comparison_record(evaluations), out_dir / "comparison.json")
    write_parquet(experiment.test_scores(ts, trained_models), out_dir / "test_scores.parquet")
    plots = experiment.write_plots(ts, trained_models, evaluations, out_dir)
    candidate = train.choose_candidate(trained_models, ts.part("valid"))
    gain = decision_gain(ts.frame)
    context.add_output_metadata(
        {
            "summary": dg.MetadataValue.md(table.to_markdown(index=False)),
            "plots": [str(p) for p in plots],
            # The progress line: the candidate's primary metric, as the table states it.
            "headline": f"{candidate} {PRIMARY_METRIC} ({gain}) {evaluations[candidate].primary(gain)}",
        }
    )
    return evaluations


@dg.asset(group_name="models", kinds={"mlflow"})
def candidate_model(
    context: dg.AssetExecutionContext,
    debiased_training_data: TrainingSet,
    trained_models: dict[str, object],
    model_evaluation: dict[str, ModelEvaluation],
    model_registry: ModelRegistryResource,
    settings: SettingsResource,
) -> LoggedRanker:
    """The candidate ranker (best on the valid days by the debiased metric) logged to MLflow
    (params, metrics, slices, plots, the propensity curve, lineage) and registered as a new
    version of `ranker`, with no alias: only the gate gives one."""
    training_data = debiased_training_data
    name = train.choose_candidate(trained_models, training_data.part("valid"))
    ranker = trained_models[name]
    # Lineage names what the training set was built from, not whatever the store holds now.
    meta = training_data.metadata
    lineage = Lineage.of(training_data, meta["feature_views"], meta["feature_service"])
    reports = settings.get().reports_dir
    plots = sorted((reports / "evaluation").glob("*.png"))
    plots += sorted((reports / "position_bias").glob("curve.*"))
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
    debiased_training_data: TrainingSet,
    trained_models: dict[str, object],
    model_evaluation: dict[str, ModelEvaluation],
    candidate_model: LoggedRanker,
    model_registry: ModelRegistryResource,
    settings: SettingsResource,
) -> gate.GateDecision:
    """The promotion gate: champion only if every check passes, else challenger or rejected,
    with the reasons in MLflow tags, a gate report and the model card."""
    cfg = settings.get()
    training_data = debiased_training_data
    registry = model_registry.registry()
    name = candidate_model.model_name
    decision = gate.promote(
        registry,
        candidate_model.version,
        training_data.part("test"),
        candidate=model_evaluation[name],
        baseline=model_evaluation[train.BASELINE],
    )
    card = write_model_card(
        cfg.reports_dir / "model_cards" / f"ranker-v{candidate_model.version}.md",
        model_name=name,
        version=candidate_model.version,
        evaluation=model_evaluation[name],
        training=TrainingSummary.of(training_data),
        decision=decision,
        references=[e for n, e in model_evaluation.items() if n != name],
    )
    # The gate logged its report and record under gate/ (gate.GATE_ARTIFACTS); the card has
    # its own folder: both files are ranker-v<N>.md.
    log_model_card(registry, candidate_model.run_id, card)
    context.add_output_metadata(
        {
            "decision": decision.decision,
            "headline": f"v{candidate_model.version} -> {decision.decision}",
            "brief": gate_brief(
                decision, cfg.reports_dir / "gate" / f"{decision.model_name}-v{decision.version}.md"
            ),
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
