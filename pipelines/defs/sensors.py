"""Sensors: served days turned into monitoring runs, and monitoring alerts into retraining.

``served_days_sensor`` watches the served-traffic ledger (``monitoring.monitor.served_dir``).
Each whole day it covers that is not yet a ``served_days`` partition becomes one, with a
``monitoring`` run for it (run key ``served_day:<day>``, so a day is monitored once): the
monitoring windows follow the traffic without anyone adding partitions by hand.

``retraining_sensor`` reads the alert log (``monitoring.alerts.read_alerts``, oldest first)
from the last alert it handled (its cursor) on. It logs every new alert; for each one that
requests retraining (feature drift, ranking quality; never data quality) it asks for a run
of the ``retrain`` job over the newest data: the raw events extended with the served
traffic, so the time split's valid and test days are the newest served days.

One run per tick, however many alerts ask for it: a drifting world raises an alert a day
per report (16 in one measured drill), and every one of those runs would train on the same
newest data. The run key is the newest of those alerts' ids, so a tick never starts two
runs for the same alerts, even if the cursor were lost.

The candidate of that run passes the same blocking checks and the same promotion gate as
any other; if it wins, ``champion`` moves and a running service swaps to it.
"""

import dagster as dg

from features.events import ledger_span
from monitoring.alerts import Alert, read_alerts
from monitoring.monitor import days_between, served_dir
from pipelines.defs.jobs import monitoring_job, retrain_job
from pipelines.defs.monitoring_assets import served_days as served_days_partitions
from pipelines.defs.resources import SettingsResource


@dg.sensor(job=monitoring_job, minimum_interval_seconds=60)
def served_days_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """A monitoring partition and run for each new whole day of served traffic."""
    ledger = served_dir(settings.get())
    span = ledger_span(ledger)
    if span is None:
        return dg.SkipReason(f"no served-traffic ledger at {ledger} yet")
    known = set(context.instance.get_dynamic_partitions(served_days_partitions.name))
    new = [day for day in days_between(*span) if day not in known]
    if not new:
        return dg.SkipReason(f"no new served day (the ledger ends {span[1]:%Y-%m-%d %H:%M})")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=day, run_key=f"served_day:{day}") for day in new],
        dynamic_partitions_requests=[served_days_partitions.build_add_request(new)],
    )


def new_alerts(alerts: list[Alert], cursor: str | None) -> list[Alert]:
    """The alerts after the one named by ``cursor`` (all of them without a cursor). A cursor
    not in the log (the log was reset) starts over: run keys still stop repeats."""
    ids = [a.alert_id for a in alerts]
    if cursor is None or cursor not in ids:
        return alerts
    return alerts[ids.index(cursor) + 1 :]


def retrain_run_config(ledger_dir: str) -> dict[str, object]:
    """Run config of a retraining run: raw events extended with the served-traffic ledger."""
    return {"ops": {"raw_events": {"config": {"served_traffic_dir": ledger_dir}}}}


def retrain_request(alerts: list[Alert], ledger_dir: str) -> dg.RunRequest:
    """One retraining run for ``alerts`` (oldest first), keyed and tagged by the newest."""
    newest = alerts[-1]
    return dg.RunRequest(
        run_key=newest.alert_id,
        run_config=retrain_run_config(ledger_dir),
        tags={
            "ranklab/alert": newest.alert_id,
            "ranklab/alert_report": newest.report,
            "ranklab/alert_window": newest.window_start,
            "ranklab/alerts": str(len(alerts)),
            "ranklab/first_alert": alerts[0].alert_id,
            "ranklab/retrains_version": newest.model_version,
        },
    )


@dg.sensor(job=retrain_job, minimum_interval_seconds=30)
def retraining_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """One retraining run for the new alerts that request one; every new alert is logged."""
    cfg = settings.get()
    alerts = new_alerts(read_alerts(cfg), context.cursor)
    if not alerts:
        return dg.SkipReason("no new monitoring alerts")
    for alert in alerts:
        verdict = "requests retraining" if alert.requests_retraining else "no retraining"
        context.log.info(f"alert {alert.alert_id} ({alert.report}): {verdict}; {alert.markdown}")
    context.update_cursor(alerts[-1].alert_id)
    retraining = [a for a in alerts if a.requests_retraining]
    if not retraining:
        return dg.SkipReason(f"{len(alerts)} new alert(s), none requests retraining")
    ledger = served_dir(cfg)
    if not ledger.exists():
        # Alerts of an in-process drill (`ranklab simulate`) have no served traffic to
        # retrain on: a run would fail at raw_events. Say so instead of starting it.
        return dg.SkipReason(
            f"{len(retraining)} alert(s) request retraining, but there is no served-traffic "
            f"ledger at {ledger} (a drill's alerts?); retrain with `make drift-demo` or after "
            "serving real traffic"
        )
    return [retrain_request(retraining, str(ledger))]


SENSORS = [served_days_sensor, retraining_sensor]
