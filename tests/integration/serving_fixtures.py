"""What the serving tests share: a small trained state, a real server process, fault models.

``build_serving_state`` runs the pipeline's plain functions at a tiny scale (generator ->
feature tables -> Feast apply and materialize -> training set -> two listwise rankers logged
to the MLflow registry, the first promoted to ``champion``): ~30 s, once per session.

``RunningServer`` starts ``bentoml serve`` as a subprocess with the same command line and
environment ``make serve`` uses, on a free loopback port, and stops it with SIGTERM (the
graceful path that flushes the prediction log).

``FaultSwitchModel`` is a registered pyfunc with the ranker's signature that scores like a
constant, then raises or stalls once a trigger file appears: a fault injected into the
model of a running server. It passes the load-time check (no trigger yet), as a model with
a data-dependent bug would.

Every version registered here is sealed (``Registry.seal``: its artifact digest recorded, as
the gate does), since the server refuses versions without one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from features import aggregates
from features.store import apply_definitions, materialize
from features.training_set import build_training_set
from models.evaluation import evaluate
from models.pyfunc import input_columns
from models.ranker import ListwiseRanker, RankerConfig
from models.registry import Lineage, Registry
from ranklab.schema import DEVICE, TrainingSet
from ranklab.settings import DataSettings, Settings
from serving.launch import server_command, server_env
from serving.runtime import model_cache_dir
from simulation.generator import generate_marketplace

# A tenth of the default marketplace over 28 days: 7 warm-up, 7 train, 7 valid, 7 test days.
TINY_DATA = DataSettings(scale=0.1, n_days=28)
TINY_RANKER = RankerConfig(hidden=(16,), epochs=3, patience=3, dropout=0.0, batch_sessions=16)
API_KEY = "test-key"
HEADERS = {"x-api-key": API_KEY}


@dataclass(frozen=True)
class ServingState:
    """A state folder with features online and two registered rankers (v1 is champion)."""

    settings: Settings
    known_items: list[int]
    known_users: list[int]
    versions: tuple[str, str]
    feature_columns: list[str]
    example: pd.DataFrame  # a few training rows: signature and probe input for extra models


_SHARED: dict[str, ServingState] = {}


@pytest.fixture(scope="session")
def serving_state(tmp_path_factory: pytest.TempPathFactory) -> ServingState:
    """One state for the whole session, however many test modules import this fixture.

    Each importing module gets its own fixture definition; the memo makes them share the
    ~30 s build. Tests that change the registry or the online store put it back.
    """
    if "state" not in _SHARED:
        _SHARED["state"] = build_serving_state(tmp_path_factory.mktemp("serving") / "state")
    return _SHARED["state"]


def build_serving_state(state_dir: Path) -> ServingState:
    settings = Settings(state_dir=state_dir, data=TINY_DATA)
    tables = generate_marketplace(settings.data)
    aggregates.write_feature_tables(aggregates.compute_feature_tables(tables), settings)
    store = apply_definitions(settings)
    materialize(store, aggregates.snapshot_days(tables)[-1].to_pydatetime())
    training_set = build_training_set(settings, tables, store)
    registry = Registry(settings)
    versions = tuple(_register(registry, training_set, seed) for seed in (0, 1))
    registry.promote_champion(versions[0], {"gate.decision": "serving test fixture"})
    return ServingState(
        settings=settings,
        known_items=sorted(tables["items"]["item_id"].tolist()),
        known_users=sorted(tables["users"]["user_id"].tolist()),
        versions=versions,  # type: ignore[arg-type]
        feature_columns=training_set.feature_columns,
        example=training_set.part("train").head(5),
    )


def _register(registry: Registry, training_set: TrainingSet, seed: int) -> str:
    config = RankerConfig(**{**TINY_RANKER.__dict__, "seed": seed})
    ranker = ListwiseRanker(training_set.feature_columns, config, progress=False)
    ranker.fit(training_set.part("train"), training_set.part("valid"))
    test = training_set.part("test")
    evaluation = evaluate(test, ranker.predict(test), ranker.name, [DEVICE], seed=0, n_boot=50)
    lineage = Lineage.of(training_set, feature_views=["item_stats"], feature_service="ranker_v1")
    logged = registry.log_training_run(ranker, training_set, evaluation, lineage, params={})
    registry.seal(logged.version)  # the digest the gate records; the server verifies it
    return logged.version


# ---- a model that fails on demand ----
class FaultSwitchModel(mlflow.pyfunc.PythonModel):
    """Scores 0 for every row until ``<trigger_dir>/raise`` or ``/slow`` exists."""

    def __init__(self, trigger_dir: str, stall_seconds: float) -> None:
        self.trigger_dir = trigger_dir
        self.stall_seconds = stall_seconds

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:  # noqa: ARG002
        triggers = Path(self.trigger_dir)
        if (triggers / "raise").exists():
            raise RuntimeError("injected model failure")
        if (triggers / "slow").exists():
            time.sleep(self.stall_seconds)
        return np.zeros(len(model_input))


def register_fault_model(state: ServingState, trigger_dir: Path, stall_seconds: float) -> str:
    """Log a FaultSwitchModel with the ranker's signature as a new version; returns it."""
    import cloudpickle

    # The server cannot import this test module: ship the class inside the pickle.
    cloudpickle.register_pickle_by_value(__import__(__name__))
    registry = Registry(state.settings)
    example = state.example[input_columns(state.feature_columns)].reset_index(drop=True)
    signature = mlflow.models.infer_signature(example, np.zeros(len(example)))
    with registry.activated(), mlflow.start_run(experiment_id=registry.experiment_id()):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=FaultSwitchModel(str(trigger_dir), stall_seconds),
            signature=signature,
            registered_model_name=registry.model_name,
        )
    version = str(info.registered_model_version)
    registry.seal(version)  # as the gate would: the server refuses unsealed versions
    return version


# ---- a real server ----
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reachable(host: str, port: int) -> bool:
    """Whether a server answers at host:port (the services profile's PostgreSQL and Redis)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def copy_state(state: ServingState, target: Path) -> Settings:
    """The trained state without what a server leaves (its model cache, its log): for a
    test whose server must not share the session's state."""
    leftovers = shutil.ignore_patterns("predictions", model_cache_dir(state.settings).name)
    shutil.copytree(state.settings.root, target, ignore=leftovers)
    return state.settings.model_copy(update={"state_dir": target})


class RunningServer:
    """``bentoml serve`` of the ranking service in a subprocess, on a free loopback port."""

    def __init__(self, state_dir: Path, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            server_command(self.port),
            env=server_env(RANKLAB_STATE_DIR=str(state_dir), **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() can end the workers too
        )

    def wait_live(self, timeout: float = 120.0) -> RunningServer:
        """Until /livez answers (the worker has built the service)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/livez", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server not live after {timeout} s:\n{self.log_tail()}")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=HEADERS, timeout=30.0, **kwargs)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful: in-flight requests end, the prediction log is flushed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


# ---- requests ----
def rank_body(
    user_id: int, candidates: list[int], k: int | None = None, query_category: str = "books"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": user_id,
        "context": {"device": "mobile", "region": "north", "query_category": query_category},
        "candidates": candidates,
    }
    if k is not None:
        body["k"] = k
    return body


def wait_for(condition: Callable[[], bool], timeout: float, every: float = 0.2) -> float:
    """Seconds until ``condition()`` held; raises TimeoutError after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(every)
    raise TimeoutError(f"condition not met within {timeout} s")


def served_version(server: RunningServer) -> str | None:
    detail = httpx.get(f"{server.url}/readyz", timeout=5.0).json()
    return None if detail.get("model") is None else detail["model"]["version"]


# ---- faults injected into the online store of a running server ----
def online_store_path(settings: Settings) -> Path:
    return settings.feast_dir / "online_store.db"


@contextmanager
def online_store_unreadable(settings: Settings) -> Iterator[None]:
    """Overwrite the SQLite file in place with zeros (the server's open connection reads
    them: "file is not a database"), then put the original bytes back."""
    path = online_store_path(settings)
    original = path.read_bytes()
    try:
        with open(path, "r+b") as file:
            file.write(b"\0" * len(original))
        yield
    finally:
        with open(path, "r+b") as file:
            file.write(original)


@contextmanager
def online_store_locked(settings: Settings) -> Iterator[None]:
    """Hold an exclusive lock: readers wait (SQLite's busy timeout is 5 s), past any budget."""
    connection = sqlite3.connect(online_store_path(settings), isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


@contextmanager
def feature_rows_deleted(settings: Settings, view: str, feature: str) -> Iterator[None]:
    """Delete one feature of one view for every entity (a broken materialization)."""
    table = f"{settings.feast.project}_{view}"
    with sqlite3.connect(online_store_path(settings)) as connection:
        rows = connection.execute(
            f"SELECT * FROM {table} WHERE feature_name = ?", (feature,)
        ).fetchall()
        connection.execute(f"DELETE FROM {table} WHERE feature_name = ?", (feature,))
    try:
        yield
    finally:
        placeholders = ",".join("?" * len(rows[0]))
        with sqlite3.connect(online_store_path(settings)) as connection:
            connection.executemany(f"INSERT INTO {table} VALUES ({placeholders})", rows)
