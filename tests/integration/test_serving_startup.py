"""Start-up without the model registry: from the disk cache, else from popularity.

Two servers start at once over two copies of the trained state whose MLflow database has
been overwritten (the registry is unreachable). One copy holds the disk cache a previous
server left (made here by the same loader the server uses); the other holds none. Then the
registry comes back and the second server picks the champion up without a restart.
"""

# ruff: noqa: F811 - pytest fixtures imported from serving_fixtures are parameters here
from __future__ import annotations

import httpx
import pytest
from serving_fixtures import (
    API_KEY,
    RunningServer,
    ServingState,
    copy_state,
    rank_body,
    served_version,
    serving_state,  # noqa: F401 - a fixture
    wait_for,
)

from models.registry import Registry
from ranklab.settings import Settings
from serving.champion import ChampionLoader, ModelDiskCache
from serving.runtime import model_cache_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cache_champion(settings: Settings) -> str:
    """What a server that once loaded the champion leaves on disk."""
    registry = Registry(settings)
    loader = ChampionLoader(registry, ModelDiskCache(model_cache_dir(settings)), lambda m: None)
    return loader.load_version(loader.champion_version()).version


def break_registry(settings: Settings) -> bytes:
    """Overwrite the MLflow database with zeros; returns the original bytes."""
    database = settings.mlflow_dir / "mlflow.db"
    original = database.read_bytes()
    database.write_bytes(b"\0" * len(original))
    return original


@pytest.fixture(scope="module")
def servers(serving_state: ServingState, tmp_path_factory):
    root = tmp_path_factory.mktemp("registry-down")
    cached, bare = (
        copy_state(serving_state, root / "cached"),
        copy_state(serving_state, root / "bare"),
    )
    cache_champion(cached)
    originals = {"cached": break_registry(cached), "bare": break_registry(bare)}
    running = {
        name: RunningServer(
            settings.root,
            root / f"{name}.log",
            RANKLAB_SERVING__API_KEY=API_KEY,
            RANKLAB_SERVING__FEATURE_TIMEOUT_MS="1000",  # a busy CI machine is not a fault here
            RANKLAB_SERVING__MODEL_TIMEOUT_MS="1000",
        )
        for name, settings in (("cached", cached), ("bare", bare))
    }
    try:
        for server in running.values():
            server.wait_live()
        yield running, {"cached": cached, "bare": bare}, originals
    finally:
        for server in running.values():
            server.stop()


def test_unreachable_registry_starts_from_the_disk_cache_and_readyz_says_so(serving_state, servers):
    server = servers[0]["cached"]
    readyz = httpx.get(f"{server.url}/readyz", timeout=10)
    detail = readyz.json()
    with server.client() as client:
        body = client.post("/rank", json=rank_body(1, serving_state.known_items[:10])).json()

    assert readyz.status_code == 200
    assert detail["model"]["source"] == "disk_cache"
    assert detail["model"]["version"] == serving_state.versions[0]
    assert detail["status"] == "degraded"
    assert detail["registry"]["reachable"] is False
    assert "started from the disk cache" in detail["start_note"]
    assert "registry unreachable" in detail["start_note"]
    assert (body["served_by"], body["model_version"]) == ("model", serving_state.versions[0])


def test_unreachable_registry_and_no_cache_serves_popularity_and_readyz_says_so(
    serving_state, servers
):
    server = servers[0]["bare"]
    detail = httpx.get(f"{server.url}/readyz", timeout=10).json()
    with server.client() as client:
        body = client.post("/rank", json=rank_body(1, serving_state.known_items[:10])).json()
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text

    assert detail["ready"] is True  # it answers every request, by popularity
    assert detail["model"] is None and detail["serving"] == "fallback:popularity"
    assert detail["start_note"] == "no champion from the registry and none cached on disk"
    assert body["served_by"] == "fallback:no_model"
    assert body["model_name"] == "popularity"
    assert 'ranklab_rank_fallbacks_total{reason="no_model"} 1.0' in metrics
    assert 'model_name="popularity",source="none"' in metrics


def test_registry_coming_back_is_noticed_without_a_restart(serving_state, servers):
    running, settings, originals = servers
    (settings["bare"].mlflow_dir / "mlflow.db").write_bytes(originals["bare"])

    wait_for(lambda: served_version(running["bare"]) == serving_state.versions[0], timeout=15)
    with running["bare"].client() as client:
        body = client.post("/rank", json=rank_body(1, serving_state.known_items[:10])).json()
    assert body["served_by"] == "model"


def test_two_workers_starting_together_both_serve_the_champion(serving_state, tmp_path):
    # Each worker downloads the champion into the shared model cache at the same moment.
    # Before downloads went through private staging folders, one worker could delete the
    # other's half-written copy, refuse the champion and answer every request with the
    # fallback (seen in the serving benchmark). The race depends on timing, so this checks
    # the outcome; tests/unit/test_serving_champion.py forces the overlap.
    settings = copy_state(serving_state, tmp_path / "state")
    server = RunningServer(
        settings.root,
        tmp_path / "server.log",
        BENTOML_CONFIG_OPTIONS="services.ranking.workers=2",
    )
    by_worker: dict[int, dict] = {}

    def both_workers_answered() -> bool:
        detail = httpx.get(f"{server.url}/readyz", timeout=5).json()  # a new connection each
        by_worker[detail["worker_pid"]] = detail  # time: either worker may accept it
        return len(by_worker) == 2

    try:
        server.wait_live()
        wait_for(both_workers_answered, timeout=90, every=0.1)
    finally:
        server.stop()

    champion = str(Registry(settings).champion_version().version)
    for detail in by_worker.values():
        assert detail["model"] is not None, detail["registry"]
        assert detail["model"]["version"] == champion
        assert detail["registry"]["refused_versions"] == {}
