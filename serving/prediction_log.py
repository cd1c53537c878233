"""The prediction log: one row per answered ranking request, written off the request path.

The request handler only puts a ``PredictionRecord`` on an in-memory queue (about a
microsecond); a background thread turns queued records into Parquet files every
``flush_seconds`` (or sooner when ``flush_rows`` are waiting), and ``close()`` writes what is
left, so a graceful shutdown loses nothing. Rows are never dropped: the queue is unbounded,
and its depth is a metric to alert on if the disk ever falls behind.

Layout (Hive-style partitions, readable by pandas, DuckDB, Spark)::

    <state>/predictions/date=2026-11-28/part-<pid>-<seq>.parquet

Each file is written atomically (``ranklab.io.atomic_path``): a reader sees whole files
only. One file per flush keeps writes atomic; a daily compaction can merge them later.

Each row holds the request (user, context, candidates), the features the scores were
computed from (a matrix, ``n_candidates x len(feature_names)``; null when the online store
was not read), the scores in candidate order, which model answered and how, and the
latency. ``explode_features`` turns rows into one row per (request, candidate), the shape
drift reports compare with the training set.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ranklab.io import atomic_path

logger = logging.getLogger(__name__)

PARTITION_KEY = "date"


@dataclass(frozen=True)
class PredictionRecord:
    """What one ranking request saw and answered (the DESIGN.md prediction-log row)."""

    request_id: str
    timestamp: datetime  # UTC, when the request was received
    user_id: int
    device: str
    region: str
    query_category: str
    candidates: np.ndarray  # int64, in request order
    scores: np.ndarray  # float64, aligned with candidates (not sorted)
    k: int  # how many items were returned
    model_name: str
    model_version: str
    served_by: str
    latency_ms: float
    cold_user: bool
    cold_items: list[int]
    feature_names: tuple[str, ...] = ()
    features: np.ndarray | None = None  # float64 (n_candidates, n_features); None: not read
    experiment: str | None = None  # the A/B experiment's name; None: no experiment ran
    experiment_arm: str | None = None  # the exposure record: the arm that served this user
    # The randomisation intervention (serving/randomization.py): how many top positions were
    # shuffled (0: none) and, when they were, the order shown (item ids, best slot first).
    randomized_top_k: int = 0
    shown_order: np.ndarray | None = None


SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.int64()),
        ("device", pa.string()),
        ("region", pa.string()),
        ("query_category", pa.string()),
        ("candidates", pa.list_(pa.int64())),
        ("scores", pa.list_(pa.float64())),
        ("k", pa.int32()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("served_by", pa.string()),
        ("latency_ms", pa.float64()),
        ("cold_user", pa.bool_()),
        ("cold_items", pa.list_(pa.int64())),
        ("experiment", pa.string()),
        ("experiment_arm", pa.string()),
        ("feature_names", pa.list_(pa.string())),
        ("features", pa.list_(pa.list_(pa.float64()))),
        ("randomized_top_k", pa.int32()),
        ("shown_order", pa.list_(pa.int64())),
    ]
)
_DICTIONARY_COLUMNS = (
    "device",
    "region",
    "query_category",
    "model_name",
    "model_version",
    "served_by",
)
_SCALAR_FIELDS = (
    "request_id",
    "timestamp",
    "user_id",
    "device",
    "region",
    "query_category",
    "k",
    "model_name",
    "model_version",
    "served_by",
    "latency_ms",
    "cold_user",
    "experiment",
    "experiment_arm",
    "randomized_top_k",
)


class PredictionLog:
    """Appends ``PredictionRecord``s to partitioned Parquet files from a background thread.

    ``on_written(n)`` is called after each file with its row count (the metrics hook).
    """

    def __init__(
        self,
        root: Path,
        flush_seconds: float = 2.0,
        flush_rows: int = 5_000,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        if flush_seconds <= 0 or flush_rows <= 0:
            raise ValueError(
                f"PredictionLog: flush_seconds and flush_rows must be > 0, "
                f"got {flush_seconds} and {flush_rows}"
            )
        self.root = Path(root)
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._on_written = on_written or (lambda n: None)
        self._queue: queue.SimpleQueue[PredictionRecord] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._files_written = 0

    # ---- the request side ----
    def append(self, record: PredictionRecord) -> None:
        """Queue a record; never blocks and never touches the disk."""
        self._queue.put(record)
        if self._queue.qsize() >= self.flush_rows:
            self._wake.set()  # a burst: write now rather than at the end of the interval

    @property
    def pending(self) -> int:
        """Records queued but not yet written (approximate: a gauge, not an invariant)."""
        return self._queue.qsize()

    # ---- lifecycle ----
    def start(self) -> PredictionLog:
        if self._thread is not None:
            raise RuntimeError("PredictionLog.start: already started")
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Write every queued record, then stop the thread (graceful shutdown)."""
        if self._thread is None:
            return
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("prediction log: %d rows still queued after %.0f s", self.pending, timeout)
        self._thread = None

    # ---- the writer thread ----
    def _run(self) -> None:
        """Sleep, take everything queued, write it; until closed, then write the rest.

        The thread wakes once per interval (or per ``flush_rows`` burst), not per record:
        woken for every record, it took the GIL from the request thread on every request
        (a fifth of a busy worker's samples in py-spy).
        """
        buffer: list[PredictionRecord] = []
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            # Every row appended before close() was queued before the flag was set, so the
            # drain after reading the flag takes them all.
            closing = self._closing.is_set()
            buffer = self._flush(buffer + self._drain())
            if closing:
                return

    def _drain(self) -> list[PredictionRecord]:
        records = []
        while True:
            try:
                records.append(self._queue.get_nowait())
            except queue.Empty:
                return records

    def _flush(self, buffer: list[PredictionRecord]) -> list[PredictionRecord]:
        """Write the buffer; on failure keep it for the next flush (rows are never dropped)."""
        if not buffer:
            return buffer
        try:
            for date, records in _by_date(buffer).items():
                self._write_file(date, records)
        except Exception:  # noqa: BLE001 - a full disk must not kill the writer thread
            logger.exception("prediction log: writing %d rows failed; retrying", len(buffer))
            return buffer
        return []

    def _write_file(self, date: str, records: list[PredictionRecord]) -> Path:
        self._files_written += 1
        name = f"part-{os.getpid()}-{int(time.time() * 1e3)}-{self._files_written:06d}.parquet"
        target = self.root / f"{PARTITION_KEY}={date}" / name
        with atomic_path(target) as tmp:
            # Dictionary-encode the few low-cardinality strings only: on the float
            # features it costs time and saves nothing.
            pq.write_table(to_table(records), tmp, use_dictionary=list(_DICTIONARY_COLUMNS))
        self._on_written(len(records))
        return target


def _by_date(records: list[PredictionRecord]) -> dict[str, list[PredictionRecord]]:
    groups: dict[str, list[PredictionRecord]] = {}
    for record in records:
        groups.setdefault(record.timestamp.strftime("%Y-%m-%d"), []).append(record)
    return groups


def to_table(records: Sequence[PredictionRecord]) -> pa.Table:
    """Records as one Arrow table of ``SCHEMA``; the feature matrices become nested lists."""
    columns: dict[str, pa.Array] = {
        name: pa.array([getattr(r, name) for r in records], type=SCHEMA.field(name).type)
        for name in _SCALAR_FIELDS
    }
    columns["candidates"] = _lists([r.candidates for r in records], pa.int64())
    columns["scores"] = _lists([r.scores for r in records], pa.float64())
    columns["cold_items"] = pa.array([r.cold_items for r in records], type=pa.list_(pa.int64()))
    columns["feature_names"] = pa.array(
        [list(r.feature_names) for r in records], type=pa.list_(pa.string())
    )
    columns["features"] = _matrices([r.features for r in records])
    columns["shown_order"] = pa.array(
        [None if r.shown_order is None else r.shown_order.tolist() for r in records],
        type=pa.list_(pa.int64()),
    )
    return pa.table([columns[f.name] for f in SCHEMA], schema=SCHEMA)


def _lists(arrays: Sequence[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """A list<value_type> array from numpy vectors without going through Python lists."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int32, count=len(arrays))
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)])
    values = np.concatenate(arrays) if arrays else np.array([])
    return pa.ListArray.from_arrays(offsets, pa.array(values, type=value_type))


def _matrices(matrices: Sequence[np.ndarray | None]) -> pa.Array:
    """A list<list<float64>> array: one matrix per row, a list per matrix row; None -> null.

    Built from three flat numpy arrays (values, row offsets, matrix offsets), without a
    Python object per matrix row: this runs for every logged request.
    """
    shapes = np.array([(0, 0) if m is None else m.shape for m in matrices], dtype=np.int64)
    present = [m.ravel() for m in matrices if m is not None]
    values = pa.array(np.concatenate(present) if present else np.array([]), type=pa.float64())
    row_lengths = np.repeat(shapes[:, 1], shapes[:, 0])
    row_offsets = np.concatenate([[0], np.cumsum(row_lengths)]).astype(np.int32)
    rows = pa.ListArray.from_arrays(pa.array(row_offsets), values)
    matrix_offsets = np.concatenate([[0], np.cumsum(shapes[:, 0])]).astype(np.int32)
    nulls = pa.array([m is None for m in matrices], type=pa.bool_())
    return pa.ListArray.from_arrays(pa.array(matrix_offsets), rows, mask=nulls)


# ---- reading ----
def read_predictions(root: Path, dates: Sequence[str] | None = None) -> pd.DataFrame:
    """Every logged row under ``root`` (or only the given ``YYYY-MM-DD`` partitions)."""
    root = Path(root)
    folders = (
        sorted(root.glob(f"{PARTITION_KEY}=*"))
        if dates is None
        else [root / f"{PARTITION_KEY}={date}" for date in dates]
    )
    files = [file for folder in folders for file in sorted(folder.glob("*.parquet"))]
    if not files:
        return SCHEMA.empty_table().to_pandas()
    return pa.concat_tables([pq.read_table(file, schema=SCHEMA) for file in files]).to_pandas()


def explode_features(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (request, candidate): request_id, item_id, score, then a column per feature.

    Rows logged without features (the online store was not read) are left out.
    """
    frames = []
    for row in predictions.itertuples(index=False):
        if row.features is None:
            continue
        matrix = np.vstack(row.features)
        frame = pd.DataFrame(matrix, columns=list(row.feature_names))
        frame.insert(0, "score", row.scores)
        frame.insert(0, "item_id", row.candidates)
        frame.insert(0, "request_id", row.request_id)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["request_id", "item_id", "score"])
    return pd.concat(frames, ignore_index=True)
