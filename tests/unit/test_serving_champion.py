"""Following the champion alias: when to swap, what to refuse, what to start from.

A stand-in loader plays the registry (the alias moves, the registry goes down, a version
fails to load); the integration tests do the same against a real MLflow registry.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

from models.registry import artifact_digest
from serving.champion import (
    SOURCE_DISK_CACHE,
    SOURCE_REGISTRY,
    ArtifactDigestError,
    ChampionHolder,
    ChampionLoader,
    LoadedModel,
    ModelDiskCache,
    ModelDownloadError,
)


def model(version: str, source: str = SOURCE_REGISTRY) -> LoadedModel:
    return LoadedModel("ranker", version, source, pyfunc=None, feature_columns=("x",))  # type: ignore[arg-type]


@dataclass
class Loader:
    alias: str | None = "1"
    registry_up: bool = True
    broken: set[str] = field(default_factory=set)
    download_failures: int = 0  # the next loads that fail to download (then succeed)
    cached: LoadedModel | None = None
    loads: list[str] = field(default_factory=list)

    def champion_version(self) -> str | None:
        if not self.registry_up:
            raise ConnectionError("registry down")
        return self.alias

    def load_version(self, version: str) -> LoadedModel:
        self.loads.append(version)
        if self.download_failures:
            self.download_failures -= 1
            raise ModelDownloadError(f"downloading v{version} failed: connection reset")
        if version in self.broken:
            raise ValueError(f"v{version} does not score")
        return model(version)

    def load_cached(self) -> LoadedModel | None:
        return self.cached


def holder(loader: Loader) -> ChampionHolder:
    swaps: list[str] = []
    held = ChampionHolder(loader, on_swap=lambda m: swaps.append(m.version))  # type: ignore[arg-type]
    held.swaps = swaps  # type: ignore[attr-defined]
    return held


def test_starts_from_the_registry_and_swaps_when_the_alias_moves():
    loader = Loader(alias="1")
    champion = holder(loader)
    assert champion.load_initial().version == "1"

    champion.poll_once()  # unchanged: nothing loaded again
    loader.alias = "2"
    champion.poll_once()

    assert champion.current.version == "2"
    assert loader.loads == ["1", "2"] and champion.swaps == ["1", "2"]


def test_a_version_that_fails_to_load_is_refused_once_and_the_current_one_kept():
    loader = Loader(alias="1", broken={"2"})
    champion = holder(loader)
    champion.load_initial()
    loader.alias = "2"
    champion.poll_once()
    champion.poll_once()

    assert champion.current.version == "1"
    assert loader.loads == ["1", "2"]  # not retried until the alias moves again
    assert "does not score" in champion.status.refused_versions["2"]


def test_a_failed_download_is_tried_again_at_the_next_poll_not_refused():
    loader = Loader(alias="1")
    champion = holder(loader)
    champion.load_initial()
    loader.alias, loader.download_failures = "2", 1
    champion.poll_once()

    assert champion.current.version == "1"  # still serving the old one
    assert champion.status.refused_versions == {}
    assert "connection reset" in champion.status.error
    champion.poll_once()
    assert champion.current.version == "2"
    assert champion.status.error is None


def download_error(tmp_path: Path, uri: str | Exception) -> Exception:
    """What ``ChampionLoader.load_version`` raises when the registry answers ``uri`` (or
    raises it) for the version's download location."""

    def download_uri(name: str, version: str) -> str:
        if isinstance(uri, Exception):
            raise uri
        return uri

    registry = SimpleNamespace(
        model_name="ranker",
        client=SimpleNamespace(get_model_version_download_uri=download_uri),
    )
    loader = ChampionLoader(registry, ModelDiskCache(tmp_path / "cache"), check=lambda m: None)  # type: ignore[arg-type]
    with pytest.raises(Exception) as raised:
        loader.load_version("9")
    return raised.value


def test_an_unreadable_artifact_store_is_a_download_error(tmp_path):
    error = download_error(tmp_path, (tmp_path / "gone").as_uri())
    assert isinstance(error, ModelDownloadError)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-written left


def test_a_version_the_registry_does_not_have_is_not_a_download_error(tmp_path):
    missing = MlflowException("no version 9", error_code=RESOURCE_DOES_NOT_EXIST)
    error = download_error(tmp_path, missing)
    assert error is missing  # refused: retrying would not make it appear


def test_registry_down_at_start_up_starts_from_the_disk_cache_and_says_so():
    champion = holder(Loader(registry_up=False, cached=model("3", SOURCE_DISK_CACHE)))

    assert champion.load_initial().source == SOURCE_DISK_CACHE
    assert champion.status.reachable is False
    assert champion.start_note.startswith("started from the disk cache (registry unreachable")


def test_registry_down_and_nothing_cached_starts_with_no_model():
    champion = holder(Loader(registry_up=False))
    assert champion.load_initial() is None
    assert champion.start_note == "no champion from the registry and none cached on disk"


def test_registry_down_while_serving_keeps_the_current_model():
    loader = Loader(alias="1")
    champion = holder(loader)
    champion.load_initial()
    loader.registry_up = False

    with pytest.raises(ConnectionError):
        champion.poll_once()
    champion.poll()  # what the poller calls: records the outage instead of raising

    assert champion.current.version == "1"
    assert champion.status.reachable is False


def test_disk_cache_remembers_the_last_good_model_and_prunes_old_downloads(tmp_path):
    cache = ModelDiskCache(tmp_path)
    for loaded_at, version in enumerate(("1", "2", "3", "4")):
        cache.folder(version).mkdir()
        os.utime(cache.folder(version), (loaded_at, loaded_at))  # the order they were loaded
        cache.remember(model(version), cache.folder(version))

    assert cache.last_loaded() == ("ranker", "4", cache.folder("4"), None)
    assert sorted(p.name for p in tmp_path.glob("v*")) == ["v2", "v3", "v4"]


def slow_fetch(started: threading.Barrier) -> Callable[[Path], None]:
    """A download that writes its files one by one, after every worker has started its own."""

    def fetch(into: Path) -> None:
        started.wait(timeout=5)
        model_dir = into / "artifacts"
        model_dir.mkdir()
        for name in ("MLmodel", "python_model.pkl", "conda.yaml"):
            (model_dir / name).write_text(name)
            time.sleep(0.01)

    return fetch


def test_workers_downloading_the_same_version_at_once_each_get_the_whole_folder(tmp_path):
    # Two server workers start together and both download the champion: before, each
    # cleared and wrote the same folder, and one of them loaded half a model and refused it.
    cache = ModelDiskCache(tmp_path)
    workers = 4
    started = threading.Barrier(workers)
    with ThreadPoolExecutor(workers) as pool:
        paths = list(pool.map(lambda _: cache.download("7", slow_fetch(started)), range(workers)))

    assert paths == [tmp_path / "v7" / "artifacts"] * workers
    assert sorted(p.name for p in paths[0].iterdir()) == [
        "MLmodel",
        "conda.yaml",
        "python_model.pkl",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["v7"]  # no staging folder left behind


def test_a_download_that_fails_leaves_no_version_folder(tmp_path):
    cache = ModelDiskCache(tmp_path)

    def broken(into: Path) -> None:
        (into / "MLmodel").write_text("half")
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        cache.download("3", broken)
    assert list(tmp_path.iterdir()) == []  # the next poll downloads again from scratch


def test_an_existing_version_folder_is_reused_without_downloading(tmp_path):
    cache = ModelDiskCache(tmp_path)
    cache.download("2", lambda into: (into / "MLmodel").write_text("v2"))

    def must_not_run(into: Path) -> None:
        raise AssertionError("downloaded again")

    assert cache.download("2", must_not_run) == tmp_path / "v2"


def test_remember_clears_staging_folders_left_by_a_worker_that_died(tmp_path):
    cache = ModelDiskCache(tmp_path)
    dead, live = tmp_path / ".download-v5-dead", tmp_path / ".download-v6-live"
    dead.mkdir(), live.mkdir()
    os.utime(dead, (0, 0))  # written long ago; ``live`` is another worker's download now
    cache.folder("4").mkdir()
    cache.remember(model("4"), cache.folder("4"))

    assert not dead.exists() and live.exists()


# ---- the artifact digest ----
def digest_loader(tmp_path: Path, recorded: str | None, require: bool = True) -> ChampionLoader:
    """A loader whose registry serves a one-file 'model' and records ``recorded``."""
    source = tmp_path / "store"
    source.mkdir(exist_ok=True)
    (source / "MLmodel").write_text("flavors: {}\n")
    registry = SimpleNamespace(
        model_name="ranker",
        client=SimpleNamespace(get_model_version_download_uri=lambda n, v: source.as_uri()),
        artifact_digest=lambda version: recorded,
    )
    loaded = []
    loader = ChampionLoader(
        registry,  # type: ignore[arg-type]
        ModelDiskCache(tmp_path / "cache"),
        check=lambda m: None,
        require_digest=require,
    )
    loader._load = lambda name, version, path, source, digest: (
        loaded.append(digest)
        or model(  # type: ignore[method-assign]
            version
        )
    )
    loader.loaded = loaded  # type: ignore[attr-defined]
    return loader


def test_bytes_with_the_recorded_digest_are_loaded(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "MLmodel").write_text("flavors: {}\n")
    loader = digest_loader(tmp_path, artifact_digest(store))
    loader.load_version("5")
    assert loader.loaded == [artifact_digest(store)]  # type: ignore[attr-defined]


def test_a_digest_mismatch_is_refused_before_loading_and_the_download_dropped(tmp_path):
    loader = digest_loader(tmp_path, "0" * 64)
    with pytest.raises(ArtifactDigestError, match="not the ones judged"):
        loader.load_version("5")
    assert loader.loaded == []  # type: ignore[attr-defined]
    assert not loader.cache.folder("5").exists()  # the next try downloads afresh


def test_a_version_without_a_recorded_digest_is_refused_unless_allowed(tmp_path):
    with pytest.raises(ArtifactDigestError, match="no recorded artifact.sha256"):
        digest_loader(tmp_path, None).load_version("5")
    allowed = digest_loader(tmp_path, None, require=False)
    allowed.load_version("5")
    assert allowed.loaded == [None]  # type: ignore[attr-defined]


def test_the_digest_changes_with_any_byte_or_name_but_not_the_location(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        (folder / "artifacts").mkdir(parents=True)
        (folder / "MLmodel").write_text("x")
        (folder / "artifacts" / "w.bin").write_bytes(b"\x00\x01")
    assert artifact_digest(a) == artifact_digest(b)
    (b / "artifacts" / "w.bin").write_bytes(b"\x00\x02")
    assert artifact_digest(a) != artifact_digest(b)
    (b / "artifacts" / "w.bin").write_bytes(b"\x00\x01")
    (b / "artifacts" / "w.bin").rename(b / "artifacts" / "v.bin")
    assert artifact_digest(a) != artifact_digest(b)


def test_mlflows_registered_model_meta_file_is_not_part_of_the_digest(tmp_path):
    """MLflow writes it into a local store's model folder whenever the model is loaded by a
    models:/ URI, after the gate digested the folder."""
    (tmp_path / "MLmodel").write_text("x")
    before = artifact_digest(tmp_path)
    (tmp_path / "registered_model_meta").write_text("model_name: ranker\nmodel_version: '1'\n")
    assert artifact_digest(tmp_path) == before
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "registered_model_meta").write_text("not MLflow's: counted")
    assert artifact_digest(tmp_path) != before
