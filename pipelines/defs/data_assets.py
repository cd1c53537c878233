"""Stage 1, data: the raw events, and the blocking checks that guard everything downstream.

The asset only orchestrates; the source adapter and the rules are plain code in ``features/``.
Whatever made the events (the simulated world, or your own export), the pipeline reads them
through ``features/events.py`` alone: only the data contract's columns, never ground truth.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from features import events, validation
from pipelines.defs.resources import SettingsResource
from ranklab.schema import RAW_TABLES


@dataclass(frozen=True)
class RawEvents:
    """The raw tables and the clock they are checked against (fixed when they were taken in)."""

    tables: dict[str, pd.DataFrame]
    as_of: datetime
    source: str


class RawEventsConfig(dg.Config):
    """Where the raw events come from: the landing folder (default; ``ranklab run`` puts the
    simulated marketplace there) or another folder of parquet tables, optionally extended
    with the traffic the service answered since (a retraining run)."""

    source_dir: str | None = None  # users/items/sessions/impressions/clicks.parquet
    # A served-traffic folder (features.events.ServedTraffic): its requests, impressions
    # and clicks are appended and its catalogue replaces the items, so the time split's
    # newest days (valid, test) are served days. Checked by the same blocking checks.
    served_traffic_dir: str | None = None


@dg.asset(group_name="data", kinds={"pandas", "parquet"})
def raw_events(
    context: dg.AssetExecutionContext, config: RawEventsConfig, settings: SettingsResource
) -> RawEvents:
    """Users, items, sessions, impressions and clicks from the landing folder (or
    ``source_dir``), checked against the export's own clock (its manifest) or else the wall
    clock, never a time read from the data, where a corrupt future row would move it. Held by
    Dagster only: nothing is published until every check below has passed."""
    source_dir = Path(config.source_dir) if config.source_dir else settings.get().landing_dir
    export = events.read_export(source_dir)
    raw = RawEvents(export.tables, export.as_of or datetime.now(UTC), export.source)
    served = {}
    if config.served_traffic_dir:
        raw, served = _with_served_traffic(raw, Path(config.served_traffic_dir))
    context.add_output_metadata(
        {f"rows.{name}": len(raw.tables[name]) for name in RAW_TABLES}
        | {"source": raw.source, "as_of": raw.as_of.isoformat()}
        | served
    )
    return raw


def _with_served_traffic(raw: RawEvents, ledger_dir: Path) -> tuple[RawEvents, dict[str, object]]:
    """``raw`` extended with a served-traffic ledger; its clock moves to the ledger's end."""
    traffic = events.ServedTraffic.load(ledger_dir)
    newest = raw.tables["sessions"]["ts"].max()
    if traffic.start <= newest:
        raise ValueError(
            f"served traffic at {ledger_dir} starts at {traffic.start}, before the newest raw "
            f"session ({newest}): it would overlap the raw events"
        )
    extended = RawEvents(
        traffic.extend(raw.tables), traffic.end.to_pydatetime(), f"{raw.source}+served"
    )
    return extended, {
        "served.path": dg.MetadataValue.path(str(ledger_dir)),
        "served.days": f"{traffic.start:%Y-%m-%d} .. {traffic.end - pd.Timedelta(days=1):%Y-%m-%d}",
        "served.requests": len(traffic.requests),
    }


@dg.asset(group_name="data", kinds={"parquet"})
def validated_events(
    context: dg.AssetExecutionContext, raw_events: RawEvents, settings: SettingsResource
) -> dict[str, pd.DataFrame]:
    """The raw events once every blocking check passed, published as parquet under the state
    folder (immutable input for features, notebooks and the traffic simulator)."""
    raw_dir = settings.get().raw_dir
    events.write_raw(raw_events.tables, raw_dir)
    context.add_output_metadata(
        {
            "path": dg.MetadataValue.path(str(raw_dir)),
            "headline": f"{len(raw_events.tables)} tables published as parquet",
        }
    )
    return raw_events.tables


def _build_check(rule_name: str) -> dg.AssetChecksDefinition:
    rule = validation.RULES[rule_name]

    @dg.asset_check(
        asset=raw_events,
        name=f"valid_{rule_name}",
        blocking=True,
        description=(rule.__doc__ or rule_name).strip().splitlines()[0],
    )
    def _check(raw_events: RawEvents) -> dg.AssetCheckResult:
        result = rule(raw_events.tables, raw_events.as_of)
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.message,
            metadata={"table": result.table, "failing_rows": result.failing_rows},
        )

    return _check


raw_event_checks = [_build_check(name) for name in validation.RULES]
