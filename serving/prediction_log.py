"""The prediction log: one row per answered ranking request, durable before the answer.

Answered means logged. ``append`` writes the request's row to this worker's write-ahead
file (``<root>/_wal/wal-<pid>-....wal``) with one ``os.write`` on an ``O_APPEND`` file
before the handler returns, so the response is sent only after the row is in the OS's
page cache: the kernel keeps it when the worker is killed (SIGKILL, the OOM killer), and
the next compaction turns it into Parquet. A power loss or a kernel crash before the page
cache is written back can still lose the last seconds: surviving those needs an ``fsync``
per request (milliseconds on this disk), which is not done. The cost of ``append`` is
measured by ``python -m benchmarks.prediction_log``.

Compaction, off the request path: every ``flush_seconds`` (or once ``flush_rows`` rows are
in the active segment) the writer thread starts a new segment and converts every closed
segment it can lock into Parquet, then deletes it. A worker holds an exclusive ``flock`` on
its active segment; the kernel releases it when the process dies, so a dead worker's
segment is compacted by any live worker (or the restarted one) at its next compaction.
Compaction is idempotent: the Parquet files of segment ``S`` are always
``date=<d>/part-<S>.parquet``, so when a compactor dies between writing them and deleting
``S``, the next one rewrites the same files with the same rows: no row is counted twice.
A segment's torn last record (its worker died inside ``os.write``) fails its length or CRC
check and is dropped: that request was never answered.

User ids are stored pseudonymised (``ranklab.privacy``): the WAL and the Parquet files hold
``user_pseudonym``, never the id.

Layout (Hive-style partitions, readable by pandas, DuckDB, Spark)::

    <state>/predictions/date=2026-11-28/part-wal-<pid>-<ns>-<seq>.parquet
    <state>/predictions/_wal/wal-<pid>-<ns>-<seq>.wal        (until compacted)

Each Parquet file is written atomically (``ranklab.io.atomic_path``): a reader sees whole
files only. ``read_predictions`` reads the Parquet files: a row is visible there after the
compaction that follows its request (within ``flush_seconds``).

Each row holds the request (pseudonymised user, context, candidates), the features the
scores were computed from (a matrix, ``n_candidates x len(feature_names)``; null when the
online store was not read), the scores in candidate order, which model answered and how,
and the latency. ``explode_features`` turns rows into one row per (request, candidate), the
shape drift reports compare with the training set.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ranklab.io import atomic_path
from ranklab.privacy import Pseudonymiser, default_pseudonymiser

logger = logging.getLogger(__name__)

PARTITION_KEY = "date"
WAL_DIR = "_wal"  # not a "date=" folder: readers of the partitions never see it
WAL_SUFFIX = ".wal"
USER_PSEUDONYM = "user_pseudonym"
# A WAL frame: magic, payload length, CRC32 of the payload. The payload: the length of a
# JSON header, the header (the scalars), then the raw bytes of candidates, scores, features.
_FRAME = struct.Struct("<4sII")
_MAGIC = b"RLW1"
_HEADER_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class PredictionRecord:
    """What one ranking request saw and answered (the DESIGN.md prediction-log row).

    ``user_id`` is the request's raw id: the log stores its pseudonym, never the id.
    """

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
        (USER_PSEUDONYM, pa.int64()),  # ranklab.privacy: a keyed hash of the user id
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
    USER_PSEUDONYM,
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
    """Appends ``PredictionRecord``s durably (the WAL) and compacts them into Parquet.

    ``on_written(n)`` is called after each compacted segment with its row count (the
    metrics hook). ``pseudonymiser``: default ``ranklab.privacy.default_pseudonymiser()``.
    """

    def __init__(
        self,
        root: Path,
        flush_seconds: float = 2.0,
        flush_rows: int = 5_000,
        on_written: Callable[[int], None] | None = None,
        pseudonymiser: Pseudonymiser | None = None,
    ) -> None:
        if flush_seconds <= 0 or flush_rows <= 0:
            raise ValueError(
                f"PredictionLog: flush_seconds and flush_rows must be > 0, "
                f"got {flush_seconds} and {flush_rows}"
            )
        self.root = Path(root)
        self.wal_dir = self.root / WAL_DIR
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._on_written = on_written or (lambda n: None)
        self._pseudonym = pseudonymiser or default_pseudonymiser()
        self._lock = threading.Lock()  # the active segment: appends against rotation
        self._fd: int | None = None
        self._active_rows = 0  # rows in the active segment
        self._rotated_rows = 0  # rows in this worker's closed segments, not yet compacted
        self._segments = 0
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the request side ----
    def append(self, record: PredictionRecord) -> None:
        """Write the record to the WAL (one ``os.write``); returns once the OS holds it.

        Raises ``OSError`` when the WAL cannot be written (the caller decides whether to
        answer unlogged), ``RuntimeError`` before ``start`` or after ``close``.
        """
        frame = encode(record, self._pseudonym(record.user_id))
        with self._lock:
            if self._fd is None:
                raise RuntimeError("PredictionLog.append: the log is not started (or closed)")
            _write_all(self._fd, frame)
            self._active_rows += 1
            burst = self._active_rows >= self.flush_rows
        if burst:
            self._wake.set()  # compact now rather than at the end of the interval

    @property
    def pending(self) -> int:
        """Rows in this worker's WAL not yet compacted into Parquet (a gauge)."""
        return self._active_rows + self._rotated_rows

    # ---- lifecycle ----
    def start(self) -> PredictionLog:
        if self._thread is not None:
            raise RuntimeError("PredictionLog.start: already started")
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._fd = self._open_segment()
        self.compact()  # what a worker that died left behind
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Close the active segment and compact everything (graceful shutdown)."""
        if self._thread is None:
            return
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error(
                "prediction log: %d rows not compacted after %.0f s", self.pending, timeout
            )
        self._thread = None

    # ---- the writer thread ----
    def _run(self) -> None:
        """Sleep, rotate, compact; when closed, close the segment and compact the rest.

        The thread wakes once per interval (or per ``flush_rows`` burst), not per record:
        woken for every record, it took the GIL from the request thread on every request.
        """
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closing.is_set()
            try:
                self._rotate(reopen=not closing)
            except OSError:
                logger.exception("prediction log: starting a new WAL segment failed")
            self.compact()
            if closing:
                return

    def _rotate(self, reopen: bool) -> None:
        """Close the active segment (it becomes compactable) and open a new one."""
        with self._lock:
            if reopen and self._fd is not None and self._active_rows == 0:
                return  # nothing to hand over: keep appending to the same segment
            new_fd = self._open_segment() if reopen else None
            if self._fd is not None:
                os.close(self._fd)  # releases the flock: the segment can be compacted
            self._fd = new_fd
            self._rotated_rows += self._active_rows
            self._active_rows = 0

    def _open_segment(self) -> int:
        """A new segment, locked before it gets its ``.wal`` name: no compactor can take a
        segment between its creation and its lock."""
        self._segments += 1
        stem = f"wal-{os.getpid()}-{time.time_ns()}-{self._segments:06d}"
        tmp = self.wal_dir / f".{stem}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(tmp, self.wal_dir / f"{stem}{WAL_SUFFIX}")
        return fd

    def compact(self) -> int:
        """Compact every closed segment into Parquet (this worker's and dead workers');
        returns the rows written. A segment that fails (a full disk) stays for next time."""
        if not self.wal_dir.is_dir():
            return 0
        total, failed = 0, False
        for segment in sorted(self.wal_dir.glob(f"*{WAL_SUFFIX}")):
            try:
                rows = compact_segment(segment, self.root)
            except Exception:  # noqa: BLE001 - a full disk must not kill the writer thread
                logger.exception("prediction log: compacting %s failed; retrying", segment.name)
                failed = True
                continue
            if rows is not None:
                total += rows
                self._on_written(rows)
        if not failed:
            self._rotated_rows = 0
        return total


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ---- the WAL format ----
def encode(record: PredictionRecord, user_pseudonym: int) -> bytes:
    """One WAL frame for ``record`` (its user already pseudonymised)."""
    features = record.features
    header = {
        "request_id": record.request_id,
        "ts_us": _epoch_us(record.timestamp),
        USER_PSEUDONYM: user_pseudonym,
        "device": record.device,
        "region": record.region,
        "query_category": record.query_category,
        "k": int(record.k),
        "model_name": record.model_name,
        "model_version": record.model_version,
        "served_by": record.served_by,
        "latency_ms": float(record.latency_ms),
        "cold_user": bool(record.cold_user),
        "cold_items": [int(i) for i in record.cold_items],
        "experiment": record.experiment,
        "experiment_arm": record.experiment_arm,
        "randomized_top_k": int(record.randomized_top_k),
        "shown_order": None if record.shown_order is None else record.shown_order.tolist(),
        "feature_names": list(record.feature_names),
        "n": len(record.candidates),
        "f": -1 if features is None else int(features.shape[1]),
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = [
        _HEADER_LENGTH.pack(len(head)),
        head,
        np.ascontiguousarray(record.candidates, dtype="<i8").tobytes(),
        np.ascontiguousarray(record.scores, dtype="<f8").tobytes(),
    ]
    if features is not None:
        parts.append(np.ascontiguousarray(features, dtype="<f8").tobytes())
    payload = b"".join(parts)
    return _FRAME.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_segment(data: bytes) -> tuple[list[dict], int]:
    """The rows of a WAL segment, and how many trailing bytes were a torn record."""
    rows, offset = [], 0
    while offset + _FRAME.size <= len(data):
        magic, length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        payload = data[start : start + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        rows.append(_decode_payload(payload))
        offset = start + length
    return rows, len(data) - offset


def _decode_payload(payload: bytes) -> dict:
    (head_length,) = _HEADER_LENGTH.unpack_from(payload, 0)
    start = _HEADER_LENGTH.size
    row = json.loads(payload[start : start + head_length])
    start += head_length
    n, f = row.pop("n"), row.pop("f")
    row["candidates"] = np.frombuffer(payload, dtype="<i8", count=n, offset=start)
    start += 8 * n
    row["scores"] = np.frombuffer(payload, dtype="<f8", count=n, offset=start)
    start += 8 * n
    row["features"] = (
        None
        if f < 0
        else np.frombuffer(payload, dtype="<f8", count=n * f, offset=start).reshape(n, f)
    )
    row["timestamp"] = row.pop("ts_us")
    return row


def compact_segment(segment: Path, root: Path) -> int | None:
    """Turn one closed WAL segment into ``date=<d>/part-<segment>.parquet`` files, then
    delete it: its row count, or None when a live worker holds it (or it is gone)."""
    try:
        fd = os.open(segment, os.O_RDONLY)
    except FileNotFoundError:
        return None  # another worker compacted it meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live worker's active segment, or another compactor's
        if os.fstat(fd).st_nlink == 0:
            return None  # compacted and deleted while this one waited to open it
        with os.fdopen(os.dup(fd), "rb") as file:
            rows, torn = decode_segment(file.read())
        if torn:
            logger.warning(
                "prediction log: %s ends with %d bytes of a torn record (its worker died "
                "writing it; that request was not answered)",
                segment.name,
                torn,
            )
        for date, group in _rows_by_date(rows).items():
            target = root / f"{PARTITION_KEY}={date}" / f"part-{segment.stem}.parquet"
            with atomic_path(target) as tmp:
                # Dictionary-encode the few low-cardinality strings only: on the float
                # features it costs time and saves nothing.
                table = rows_to_table(group)
                pq.write_table(table, tmp, use_dictionary=list(_DICTIONARY_COLUMNS))
        segment.unlink()
        return len(rows)
    finally:
        os.close(fd)


def _epoch_us(when: datetime) -> int:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return round(aware.timestamp() * 1_000_000)


def _rows_by_date(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        date = datetime.fromtimestamp(row["timestamp"] / 1e6, UTC).strftime("%Y-%m-%d")
        groups.setdefault(date, []).append(row)
    return groups


def rows_to_table(rows: Sequence[dict]) -> pa.Table:
    """Decoded WAL rows as one Arrow table of ``SCHEMA``."""
    columns: dict[str, pa.Array] = {
        name: pa.array([r[name] for r in rows], type=SCHEMA.field(name).type)
        for name in _SCALAR_FIELDS
    }
    columns["candidates"] = _lists([r["candidates"] for r in rows], pa.int64())
    columns["scores"] = _lists([r["scores"] for r in rows], pa.float64())
    columns["cold_items"] = pa.array([r["cold_items"] for r in rows], type=pa.list_(pa.int64()))
    columns["feature_names"] = pa.array(
        [list(r["feature_names"]) for r in rows], type=pa.list_(pa.string())
    )
    columns["features"] = _matrices([r["features"] for r in rows])
    columns["shown_order"] = pa.array(
        [r.get("shown_order") for r in rows], type=pa.list_(pa.int64())
    )
    return pa.table([columns[f.name] for f in SCHEMA], schema=SCHEMA)


def to_table(
    records: Sequence[PredictionRecord], pseudonymiser: Pseudonymiser | None = None
) -> pa.Table:
    """Records as one Arrow table of ``SCHEMA``, exactly as the log stores them (through
    the WAL encoding, user ids pseudonymised)."""
    pseudonym = pseudonymiser or default_pseudonymiser()
    rows, _ = decode_segment(b"".join(encode(r, pseudonym(r.user_id)) for r in records))
    return rows_to_table(rows)


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
