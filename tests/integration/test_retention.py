"""Retention: the Dagster schedule's job deletes prediction-log and monitoring partitions
older than the configured days, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from pipelines.definitions import build_definitions
from pipelines.defs.retention import apply_retention, expired_partitions
from ranklab.settings import PrivacySettings

pytestmark = pytest.mark.integration

RETENTION_DAYS = 5


@pytest.fixture
def state(settings):
    """A state with partitions 1 to 10 days old in every place retention looks, and files
    it must leave alone."""
    settings = settings.model_copy(
        update={"privacy": PrivacySettings(retention_days=RETENTION_DAYS)}
    )
    today = datetime.now(UTC).date()
    root = settings.root
    for age in range(1, 11):
        day = today - timedelta(days=age)
        for folder in (
            root / "predictions" / f"date={day}",
            root / "monitoring" / "traffic" / "run-1" / "predictions" / f"date={day}",
            root / "monitoring" / "reports" / f"{day}T0000",
        ):
            folder.mkdir(parents=True)
            (folder / "part-0.parquet").write_bytes(b"rows")
    (root / "predictions" / "_wal").mkdir()
    (root / "predictions" / "_wal" / "wal-1-1-000001.wal").write_bytes(b"pending rows")
    (root / "monitoring" / "reference").mkdir(parents=True)
    (root / "monitoring" / "reference" / "v1.json").write_text("{}")
    return settings, today


def _ages(folder, today, prefix="date=") -> list[int]:
    days = [
        p.name.removeprefix(prefix)[:10] for p in folder.iterdir() if not p.name.startswith(".")
    ]
    return sorted((today - datetime.fromisoformat(d).date()).days for d in days if d[:4].isdigit())


def test_the_schedule_runs_the_retention_job_which_deletes_only_expired_partitions(state):
    settings, today = state
    defs = build_definitions(settings)
    schedule = defs.get_schedule_def("retention_schedule")
    assert schedule.cron_schedule == settings.privacy.retention_cron
    request = schedule.evaluate_tick(dg.build_schedule_context())
    assert len(request.run_requests) == 1  # each tick asks for one run
    assert schedule.job_name == "retention"

    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("retention").execute_in_process(instance=instance)

    assert result.success
    assert result.output_for_node("delete_expired_partitions") == 3 * (10 - RETENTION_DAYS)
    kept = list(range(1, RETENTION_DAYS + 1))
    root = settings.root
    assert _ages(root / "predictions", today) == kept
    assert _ages(root / "monitoring" / "traffic" / "run-1" / "predictions", today) == kept
    assert _ages(root / "monitoring" / "reports", today, prefix="") == kept
    assert (root / "predictions" / "_wal" / "wal-1-1-000001.wal").exists()  # not a partition
    assert (root / "monitoring" / "reference" / "v1.json").exists()


def test_the_cutoff_is_exactly_the_retention(state):
    settings, today = state
    expired = expired_partitions(settings, today)
    assert {(today - p.day).days for p in expired} == set(range(RETENTION_DAYS + 1, 11))
    assert apply_retention(settings, today) == expired
    assert expired_partitions(settings, today) == []  # a second run finds nothing
