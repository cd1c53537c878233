"""Stage 4, monitoring: what normal looks like for the promoted model, and one monitoring
window per served day. Each asset calls plain code in ``monitoring/``.

- ``monitoring_reference`` runs after the gate: when it made the candidate champion, the
  candidate's reference (``monitoring.reference``) is built and saved beside the others.
- ``monitoring_window`` is partitioned by served day (dynamic partitions ``served_days``:
  a key per day the service answered, added when the traffic is recorded). A partition
  reads that day's requests from the prediction log and the served-traffic ledger, runs
  the three Evidently reports against the reference of the model that served the day, and
  records the alerts (``monitoring.alerts``) that the retraining sensor reads.
"""

import dagster as dg

from features.events import ServedTraffic
from models.debiasing import CURVE_METADATA
from models.gate import GateDecision
from models.registry import LoggedRanker
from models.scorers import RegisteredScorer
from monitoring.monitor import (
    ServedDayResult,
    monitor_served_day,
    served_dir,
    service_log_root,
)
from monitoring.reference import build_reference, reference_dir
from monitoring.reports import ReportStore
from pipelines.defs.resources import ModelRegistryResource, SettingsResource
from ranklab.schema import TrainingSet

served_days = dg.DynamicPartitionsDefinition(name="served_days")
"""One key per served day (``YYYY-MM-DD``, UTC), added when a day of traffic is recorded."""


@dg.asset(group_name="monitoring", kinds={"pandas", "parquet"})
def monitoring_reference(
    context: dg.AssetExecutionContext,
    debiased_training_data: TrainingSet,
    candidate_model: LoggedRanker,
    promotion: GateDecision,
    model_registry: ModelRegistryResource,
    settings: SettingsResource,
) -> None:
    """The new champion's monitoring reference (its training days as served rows, and its
    ranking quality when it ranks the test days); nothing when the gate did not promote."""
    version = str(candidate_model.version)
    if promotion.decision != "champion":
        context.add_output_metadata(
            {
                "built": False,
                "reason": (why := f"v{version} not champion"),
                "headline": f"not built: {why}",
            }
        )
        return
    if CURVE_METADATA not in debiased_training_data.metadata:
        # The ranking reference replays searches with the estimated examination curve.
        context.add_output_metadata(
            {
                "built": False,
                "reason": (why := "no logged positions"),
                "headline": f"not built: {why}",
            }
        )
        return
    model = RegisteredScorer(model_registry.registry(), version)
    reference = build_reference(debiased_training_data, model, model_version=version)
    path = reference.save(reference_dir(settings.get(), version))
    context.add_output_metadata(
        {
            "built": True,
            "model_version": version,
            "rows": len(reference.candidates),
            "headline": f"v{version}: {len(reference.candidates):,} reference rows",
            "path": dg.MetadataValue.path(str(path)),
        }
    )


class MonitoringWindowConfig(dg.Config):
    """Where the served traffic is read from (defaults: the service's, under the state folder)."""

    ledger_dir: str | None = (
        None  # features.events.ServedTraffic; default <state>/monitoring/served
    )
    predictions_dir: str | None = None  # the prediction log; default <state>/predictions


@dg.asset(group_name="monitoring", partitions_def=served_days, kinds={"evidently"})
def monitoring_window(
    context: dg.AssetExecutionContext,
    config: MonitoringWindowConfig,
    settings: SettingsResource,
) -> None:
    """One served day: feature drift, data quality and (with the day's labels) ranking
    quality against the serving model's reference; failed critical checks become alerts."""
    cfg = settings.get()
    traffic = ServedTraffic.load(config.ledger_dir or served_dir(cfg))
    day = monitor_served_day(
        cfg,
        traffic,
        config.predictions_dir or service_log_root(cfg),
        context.partition_key,
        store=ReportStore(cfg),
    )
    for alert in day.result.alerts:
        context.log.warning(f"alert {alert.alert_id} (retraining: {alert.requests_retraining})")
    context.add_output_metadata(window_metadata(day))


def window_metadata(day: ServedDayResult) -> dict[str, object]:
    """What the Dagster UI shows for a window: each report's verdict and link, the alerts."""
    result = day.result
    meta: dict[str, object] = {
        "model_version": day.model_version,
        "model_share": round(day.model_share, 3),
        "seconds": round(result.seconds, 1),
        "alerts": [a.alert_id for a in result.alerts],
        "retraining_requested": any(a.requests_retraining for a in result.alerts),
    }
    for report in result.reports:
        failed = sorted({f"{c.check}:{c.column}" for c in report.failures})
        meta[f"{report.kind}.rows"] = report.rows
        meta[f"{report.kind}.failed"] = ", ".join(failed) or "none"
        if "html" in report.paths:
            meta[f"{report.kind}.report"] = dg.MetadataValue.path(report.paths["html"])
        for check in report.checks:
            if check.check == "quality" and check.slice is None:
                meta[f"{report.kind}.{check.column}"] = round(check.value, 4)
    return meta
