"""The prediction log's cost on the request path: ``PredictionLog.append`` per request.

    python -m benchmarks.prediction_log [--requests 20000]

Since issue #15 ``append`` pseudonymises the user, encodes the row (a JSON header and the
raw candidates, scores and 100 x 19 feature matrix) and writes it to the worker's
write-ahead file with one ``os.write``, so the row survives a killed worker. Before, it put
the record on an in-memory queue (lost with the worker). Both are timed here in one run,
on a realistic row, with the compactor thread running as in the service; the target is
under 0.1 ms per request.
"""

from __future__ import annotations

import argparse
import gc
import queue
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ranklab.privacy import Pseudonymiser
from serving.prediction_log import PredictionLog, PredictionRecord

CANDIDATES, FEATURES = 100, 19


def record(n: int, rng: np.random.Generator) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"{n:032x}",
        timestamp=datetime.now(UTC),
        user_id=int(rng.integers(0, 2000)),
        device="mobile",
        region="north",
        query_category="books",
        candidates=rng.choice(1000, CANDIDATES, replace=False).astype(np.int64),
        scores=rng.normal(size=CANDIDATES),
        k=CANDIDATES,
        model_name="ranker",
        model_version="3",
        served_by="model",
        latency_ms=1.5,
        cold_user=False,
        cold_items=[],
        feature_names=tuple(f"feature_{i}" for i in range(FEATURES)),
        features=rng.normal(size=(CANDIDATES, FEATURES)),
    )


def timed(append, records: list[PredictionRecord]) -> np.ndarray:
    out = np.empty(len(records))
    for i, item in enumerate(records):
        started = time.perf_counter()
        append(item)
        out[i] = time.perf_counter() - started
    return out * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prediction_log")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    records = [record(n, rng) for n in range(args.requests)]
    # As the service does after start-up (serving/service.py): the records held here would
    # otherwise make every full collection walk them, timing the collector, not append.
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="bench-plog-") as tmp:
        log = PredictionLog(Path(tmp), pseudonymiser=Pseudonymiser(b"b" * 32)).start()
        wal = timed(log.append, records)
        log.close()
    in_memory = timed(queue.SimpleQueue().put, records)
    print(f"| path ({args.requests:,} appends, {CANDIDATES}x{FEATURES} features) "
          "| mean us | p50 us | p99 us |")  # fmt: skip
    print("|---|---|---|---|")
    for name, sample in (("WAL append (now)", wal), ("in-memory queue (before)", in_memory)):
        p50, p99 = np.percentile(sample, [50, 99])
        print(f"| {name} | {sample.mean():.1f} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
