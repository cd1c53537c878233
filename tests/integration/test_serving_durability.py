"""Nothing lost, nothing forged, on a real 2-worker server.

- A worker killed with SIGKILL under load: every answered request is in the prediction log
  once (its write-ahead file outlives it; a live worker compacts it), none twice.
- A registered artifact tampered with after the gate sealed it: the server refuses it
  (``/readyz`` says why, ``ranklab_model_loads_total{outcome="digest_refused"}``) and the
  previous champion keeps serving.
- The champion is served from its code-free form (safetensors + JSON), and the log holds
  the keyed pseudonym of each user, never the id.
"""

# ruff: noqa: F811 - pytest fixtures imported from serving_fixtures are parameters here
from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import pytest
from serving_fixtures import (
    API_KEY,
    HEADERS,
    RunningServer,
    ServingState,
    copy_state,
    rank_body,
    register_fault_model,
    served_version,
    serving_state,  # noqa: F401 - a fixture
    wait_for,
)

from models.registry import Registry
from ranklab.privacy import pseudonymiser_for
from ranklab.settings import Settings
from serving.prediction_log import USER_PSEUDONYM, WAL_DIR, read_predictions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 8
REQUESTS = 3000
KILL_AFTER = 1000  # answered requests before one worker is killed
POLL_SECONDS = 1.0


@pytest.fixture(scope="module")
def state(serving_state: ServingState, tmp_path_factory) -> Settings:
    return copy_state(serving_state, tmp_path_factory.mktemp("durability") / "state")


@pytest.fixture(scope="module")
def server(state: Settings, tmp_path_factory) -> RunningServer:
    running = RunningServer(
        state.root,
        tmp_path_factory.mktemp("durability-server") / "server.log",
        BENTOML_CONFIG_OPTIONS="services.ranking.workers=2",
        RANKLAB_SERVING__API_KEY=API_KEY,
        # Generous budgets: a loaded 2-core CI machine is not the fault under test here.
        RANKLAB_SERVING__FEATURE_TIMEOUT_MS="2000",
        RANKLAB_SERVING__MODEL_TIMEOUT_MS="2000",
        RANKLAB_SERVING__LOG_FLUSH_SECONDS="0.5",
        RANKLAB_SERVING__CHAMPION_POLL_SECONDS=str(POLL_SECONDS),
    )
    try:
        running.wait_live()
        wait_for(lambda: _worker_pids(running, tries=20) >= 2, timeout=120, every=1.0)
        yield running
    finally:
        running.stop()


def _worker_pids(server: RunningServer, tries: int) -> int:
    """How many distinct workers answer /readyz over fresh connections."""
    pids = set()
    for _ in range(tries):
        try:
            response = httpx.get(f"{server.url}/readyz", timeout=5)
        except httpx.TransportError:
            continue
        if response.status_code == 200:
            pids.add(response.json()["worker_pid"])
    return len(pids)


def _artifact_folder(registry: Registry, version: str) -> Path:
    uri = registry.client.get_model_version_download_uri(registry.model_name, version)
    return Path(unquote(urlparse(uri).path))


def test_the_champion_is_served_from_its_code_free_form_with_the_gates_digest(
    serving_state, state, server
):
    detail = httpx.get(f"{server.url}/readyz", timeout=10).json()
    champion = serving_state.versions[0]
    assert detail["model"]["version"] == champion
    assert detail["model"]["format"] == "safetensors"
    assert detail["model"]["sha256"] == Registry(state).artifact_digest(champion)


def test_a_tampered_artifact_is_refused_and_the_previous_champion_keeps_serving(
    serving_state, state, server, tmp_path
):
    registry = Registry(state)
    tampered = register_fault_model(serving_state_for(state, serving_state), tmp_path, 0.0)
    folder = _artifact_folder(registry, tampered)
    victim = next(p for p in sorted(folder.rglob("*.pkl")))
    victim.write_bytes(victim.read_bytes() + b"\x00")  # one byte added after the seal
    registry.promote_champion(tampered, {"gate.decision": "durability test: tampered"})
    try:
        wait_for(
            lambda: (
                tampered
                in httpx.get(f"{server.url}/readyz", timeout=5).json()["registry"][
                    "refused_versions"
                ]
            ),
            timeout=30,
        )
        # Every worker refuses it on its own; ask until both have said so.
        wait_for(lambda: _refusals(server) >= 2, timeout=30)
        detail = httpx.get(f"{server.url}/readyz", timeout=5).json()
        with server.client() as client:
            body = client.post("/rank", json=rank_body(1, serving_state.known_items[:10])).json()
    finally:
        registry.rollback("durability test: undo the tampered champion")
    reason = detail["registry"]["refused_versions"][tampered]
    assert reason.startswith("ArtifactDigestError") and "not the ones judged" in reason
    assert detail["status"] == "degraded"
    assert detail["model"]["version"] == serving_state.versions[0]
    assert (body["served_by"], body["model_version"]) == ("model", serving_state.versions[0])
    wait_for(lambda: served_version(server) == serving_state.versions[0], timeout=15)


def _refusals(server: RunningServer) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    line = next(
        (
            x
            for x in metrics.splitlines()
            if 'ranklab_model_loads_total{outcome="digest_refused"}' in x
        ),
        None,
    )
    return 0.0 if line is None else float(line.split()[-1])


def serving_state_for(settings: Settings, shared: ServingState) -> ServingState:
    """The shared state's description pointed at this module's copy."""
    return ServingState(
        settings=settings,
        known_items=shared.known_items,
        known_users=shared.known_users,
        versions=shared.versions,
        feature_columns=shared.feature_columns,
        example=shared.example,
    )


def test_a_worker_killed_under_load_loses_no_answered_request_and_duplicates_none(
    serving_state, state, server
):
    answered: list[tuple[str, int]] = []  # (request_id, user_id) of every 200
    failures: Counter[str] = Counter()
    lock, sent = threading.Lock(), iter(range(REQUESTS))
    items = serving_state.known_items[:100]

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
            while True:
                with lock:
                    n = next(sent, None)
                if n is None:
                    return
                user = serving_state.known_users[n % len(serving_state.known_users)]
                try:
                    response = client.post("/rank", json=rank_body(user, items))
                except httpx.TransportError as error:
                    failures[type(error).__name__] += 1  # in flight on the killed worker
                    continue
                if response.status_code != 200:
                    failures[str(response.status_code)] += 1
                    continue
                with lock:
                    answered.append((response.json()["request_id"], user))

    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answered) >= KILL_AFTER, timeout=300)
    victim = httpx.get(f"{server.url}/readyz", timeout=10).json()["worker_pid"]
    os.kill(victim, signal.SIGKILL)
    for thread in threads:
        thread.join()
    # The dead worker's write-ahead file is compacted by the live worker (or the restarted
    # one) at its next compaction.
    log_root = state.root / "predictions"
    ids = {request_id for request_id, _ in answered}
    wait_for(lambda: ids <= set(read_predictions(log_root)["request_id"]), timeout=60, every=1.0)
    server.stop()  # graceful: the last compaction
    logged = read_predictions(log_root)

    counts = Counter(logged["request_id"])
    missing = ids - set(counts)
    duplicated = [request_id for request_id, n in counts.items() if n > 1]
    print(
        f"\nkill -9 of worker {victim} after {KILL_AFTER} answers: {len(answered)} answered, "
        f"{sum(failures.values())} failed {dict(failures)}, {len(missing)} answered but "
        f"missing from the log, {len(duplicated)} logged twice"
    )
    assert len(answered) + sum(failures.values()) == REQUESTS
    assert len(answered) >= REQUESTS - 100  # only the killed worker's in-flight requests fail
    assert not missing
    assert not duplicated
    assert not list((log_root / WAL_DIR).glob("*.wal"))  # every segment compacted
    # The log holds each user's keyed pseudonym, never the id.
    pseudonym = pseudonymiser_for(state)
    by_id = logged.set_index("request_id")[USER_PSEUDONYM]
    assert "user_id" not in logged.columns
    assert all(by_id[request_id] == pseudonym(user) for request_id, user in answered)
