"""Retention: delete prediction-log and monitoring partitions older than the configured days.

``Settings.privacy.retention_days`` (``RANKLAB_PRIVACY__RETENTION_DAYS``, default 30) days
are kept; ``retention_schedule`` runs the ``retention`` job every day
(``Settings.privacy.retention_cron``, UTC) when the Dagster daemon runs (``make ui`` starts
one). What it deletes, under the state folder:

- ``predictions/date=YYYY-MM-DD/`` (the service's prediction log) and every
  ``date=YYYY-MM-DD/`` partition under ``monitoring/`` (the in-process simulations' logs);
- ``monitoring/reports/<YYYY-MM-DDTHHMM>/`` (a monitoring window's drift reports);

when the partition's day is before ``today - retention_days``. A partition is deleted whole
(renamed aside first, then removed, so a reader never sees half of one). Nothing else is
touched: docs/data-governance.md lists every store and what keeps each.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from pipelines.defs.resources import SettingsResource
from ranklab.settings import Settings, get_settings

DATE_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
REPORT_WINDOW = re.compile(r"^(\d{4}-\d{2}-\d{2})T\d{4}$")


@dataclass(frozen=True)
class Deleted:
    path: Path
    day: date


def expired_partitions(settings: Settings, today: date) -> list[Deleted]:
    """The partitions older than ``settings.privacy.retention_days`` before ``today``."""
    cutoff = today - timedelta(days=settings.privacy.retention_days)
    root = settings.root
    found = [
        *_dated(root / "predictions", DATE_PARTITION, recursive=False),
        *_dated(root / "monitoring", DATE_PARTITION, recursive=True),
        *_dated(root / "monitoring" / "reports", REPORT_WINDOW, recursive=False),
    ]
    return sorted((p for p in found if p.day < cutoff), key=lambda p: (p.day, str(p.path)))


def apply_retention(settings: Settings, today: date | None = None) -> list[Deleted]:
    """Delete every expired partition; returns what was deleted."""
    expired = expired_partitions(settings, today or datetime.now(UTC).date())
    for partition in expired:
        aside = partition.path.with_name(f".deleting-{partition.path.name}")
        partition.path.rename(aside)  # gone for readers at once; removed below
        shutil.rmtree(aside)
    return expired


def _dated(root: Path, pattern: re.Pattern[str], recursive: bool) -> list[Deleted]:
    if not root.is_dir():
        return []
    folders = root.rglob("*") if recursive else root.iterdir()
    found = []
    for folder in folders:
        match = pattern.match(folder.name)
        if match and folder.is_dir():
            found.append(Deleted(folder, date.fromisoformat(match.group(1))))
    return found


@dg.op
def delete_expired_partitions(context, settings: SettingsResource) -> int:
    """Delete prediction-log and monitoring partitions older than the retention."""
    # `context` is unannotated: dagster refuses its hint as a postponed (string) annotation.
    cfg = settings.get()
    deleted = apply_retention(cfg)
    for partition in deleted:
        context.log.info(f"retention: deleted {partition.path} ({partition.day})")
    context.add_output_metadata(
        {"retention_days": cfg.privacy.retention_days, "deleted": len(deleted)}
    )
    return len(deleted)


@dg.job(description="Delete prediction-log and monitoring partitions older than the retention.")
def retention() -> None:
    delete_expired_partitions()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=retention,
    cron_schedule=get_settings().privacy.retention_cron,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
