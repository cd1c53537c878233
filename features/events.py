"""The source adapter: the event logs the system reads, and nothing else.

A marketplace emits two kinds of log, and ranklab reads both through this module only:

- the **raw tables** of the training window (``users``, ``items``, ``sessions``,
  ``impressions``, ``clicks``): a folder of parquet files, one per table, plus an optional
  ``manifest.json`` that says when the export was taken (``as_of``) and by whom (``source``).
  The embedded default is written there by the simulated world (``simulation/world.py``);
  your own export goes to the same place (``Settings.landing_dir``, or the ``raw_events``
  asset's ``source_dir``);
- the **served traffic** after it: what the front end logged while the service answered
  (the requests, what was shown where, the clicks, the catalogue), in a folder of the same
  shape (``ServedTraffic``).

Only the columns of the data contract (``ranklab.schema.RAW_COLUMNS``) are read: a file may
hold more (an export's extra fields, or a simulator's ground truth), and they never reach the
pipeline. A missing table or contract column is an error that names it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ranklab import schema
from ranklab.io import write_json, write_parquet
from ranklab.schema import RAW_COLUMNS, RAW_TABLES
from ranklab.settings import Settings

MANIFEST = "manifest.json"  # a raw export's clock and origin, written after its tables
LEDGER_META = "traffic.json"  # a served-traffic folder's span, written after its tables
# Clicks come within minutes of a search and purchases within hours; the label join waits
# this long after a window closes before it calls the window's labels complete.
LABEL_DELAY = pd.Timedelta(hours=6)
REQUEST_ID = "request_id"
TS = "ts"
# Served-traffic tables and the contract columns read from each. Requests are sessions with
# the request id the service answered them under; impressions carry the served position.
SERVED_COLUMNS: dict[str, tuple[str, ...]] = {
    "requests": (REQUEST_ID, *RAW_COLUMNS["sessions"]),
    "impressions": (REQUEST_ID, *RAW_COLUMNS["impressions"]),
    "clicks": (REQUEST_ID, *RAW_COLUMNS["clicks"]),
    "items": RAW_COLUMNS["items"],
}
SERVED_TABLES = tuple(SERVED_COLUMNS)


# ---- one table, contract columns only ----
def read_table(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """The contract ``columns`` of the parquet file at ``path``; nothing else is read."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}")
    present = set(pq.read_schema(path).names)
    missing = [c for c in columns if c not in present]
    if missing:
        raise KeyError(
            f"{what} at {path} lacks the contract columns {missing} "
            f"(ranklab.schema.RAW_COLUMNS lists what each table must hold)"
        )
    return pd.read_parquet(path, columns=list(columns))


# ---- the raw tables of the training window ----
@dataclass(frozen=True)
class RawExport:
    """The raw tables and the clock they were exported at (None: not stated)."""

    tables: dict[str, pd.DataFrame]
    as_of: datetime | None
    source: str


def read_raw(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """The five raw tables of ``raw_dir`` (``write_raw``'s layout), contract columns only."""
    raw_dir = Path(raw_dir)
    return {
        name: read_table(raw_dir / f"{name}.parquet", RAW_COLUMNS[name], f"raw table {name!r}")
        for name in RAW_TABLES
    }


def read_export(raw_dir: Path) -> RawExport:
    """``read_raw`` plus the manifest's clock and source, when the export has a manifest."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(
            f"no raw events at {raw_dir}: `ranklab run` writes the simulated marketplace "
            "there first; for your own data, export the five tables of ranklab.schema."
            "RAW_COLUMNS as parquet into it (or set the raw_events asset's source_dir)"
        )
    manifest_path = raw_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text("utf-8")) if manifest_path.exists() else {}
    as_of = pd.Timestamp(manifest["as_of"]).to_pydatetime() if "as_of" in manifest else None
    return RawExport(read_raw(raw_dir), as_of, str(manifest.get("source", "import")))


def contract_view(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each raw table's contract columns only: what the pipeline would read of ``tables``."""
    return {name: tables[name][list(RAW_COLUMNS[name])] for name in RAW_TABLES if name in tables}


def write_raw(
    tables: Mapping[str, pd.DataFrame],
    raw_dir: Path,
    as_of: pd.Timestamp | None = None,
    source: str | None = None,
) -> dict[str, Path]:
    """Each raw table's contract columns to ``raw_dir/<table>.parquet``, atomically.

    Every table and column is checked before anything is written, so a failed call leaves no
    partial set; the manifest (when ``as_of`` is given) is written last.
    """
    missing = [name for name in RAW_TABLES if name not in tables]
    if missing:
        raise KeyError(f"write_raw: tables {missing} missing; expected {list(RAW_TABLES)}")
    for name in RAW_TABLES:
        absent = [c for c in RAW_COLUMNS[name] if c not in tables[name].columns]
        if absent:
            raise KeyError(f"write_raw: table {name!r} lacks the contract columns {absent}")
    paths = {
        name: write_parquet(
            tables[name][list(RAW_COLUMNS[name])], Path(raw_dir) / f"{name}.parquet"
        )
        for name in RAW_TABLES
    }
    if as_of is not None:
        write_json({"as_of": pd.Timestamp(as_of).isoformat(), "source": source}, raw_dir / MANIFEST)
    return paths


# ---- the traffic the service answered ----
@dataclass
class ServedTraffic:
    """What the front end logged after the training window: requests (sessions with their
    request id), impressions at their served position, clicks, and the catalogue now."""

    requests: pd.DataFrame
    impressions: pd.DataFrame
    clicks: pd.DataFrame
    items: pd.DataFrame
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.meta["start"])

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(self.meta["end"])

    def labels(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """A row per shown item: request, item, served position and the label known at
        ``as_of`` (clicked, purchased, graded label 0/1/2, as in the training set)."""
        known = self.clicks[self.clicks[TS] <= as_of]
        clicked = known.groupby([REQUEST_ID, schema.ITEM_ID], as_index=False)[
            schema.PURCHASED
        ].max()
        rows = self.impressions[[REQUEST_ID, schema.ITEM_ID, schema.POSITION]].merge(
            clicked, on=[REQUEST_ID, schema.ITEM_ID], how="left", validate="one_to_one"
        )
        rows[schema.CLICKED] = rows[schema.PURCHASED].notna().astype("int64")
        rows[schema.PURCHASED] = rows[schema.PURCHASED].eq(True).astype("int64")
        rows[schema.LABEL] = rows[schema.CLICKED] + rows[schema.PURCHASED]
        return rows

    def extend(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """The raw tables of the training window with this traffic appended (contract
        columns), and the catalogue as it is now: "the newest data" a retraining run reads."""
        extended = {name: tables[name] for name in ("users",)}
        extended["items"] = self.items[list(RAW_COLUMNS["items"])]
        new = {"sessions": self.requests, "impressions": self.impressions, "clicks": self.clicks}
        for name, rows in new.items():
            columns = list(RAW_COLUMNS[name])
            extended[name] = pd.concat([tables[name][columns], rows[columns]], ignore_index=True)
        return extended

    def save(self, directory: Path) -> Path:
        """The contract columns of every table, then the meta file that names the span."""
        directory = Path(directory)
        for name, columns in SERVED_COLUMNS.items():
            write_parquet(getattr(self, name)[list(columns)], directory / f"{name}.parquet")
        write_json(self.meta, directory / LEDGER_META)  # last: it says the tables are whole
        return directory

    @classmethod
    def load(cls, directory: Path) -> ServedTraffic:
        directory = Path(directory)
        meta_path = directory / LEDGER_META
        if not meta_path.exists():
            raise FileNotFoundError(f"no served traffic at {directory} (no {LEDGER_META})")
        tables = {
            name: read_table(directory / f"{name}.parquet", columns, f"served {name}")
            for name, columns in SERVED_COLUMNS.items()
        }
        return cls(**tables, meta=json.loads(meta_path.read_text(encoding="utf-8")))


def traffic_dir(settings: Settings, run: str) -> Path:
    """Where the served traffic of a run (and, in process, its prediction log) is kept."""
    return settings.root / "monitoring" / "traffic" / run


def ledger_span(directory: Path) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """(start, end) of the served traffic saved in ``directory``, from its meta file alone
    (None when there is none): cheap enough for a sensor to call every tick."""
    meta_path = Path(directory) / LEDGER_META
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return pd.Timestamp(meta["start"]), pd.Timestamp(meta["end"])
