"""The champion model: loaded from the registry by alias, cached on disk, swapped while serving.

Serving only ever follows ``models:/ranker@champion`` (never "latest"). ``ChampionHolder``
resolves the alias to a version, downloads that version into a folder under the state
directory, loads it from there, checks it can score the features the online store serves,
and only then makes it current. The folder doubles as the disk cache: when the registry
cannot be reached at start-up, the last model that loaded successfully is started from it.

Hot swap: ``poll`` asks the registry where ``champion`` points (the runtime's poller calls
it every few seconds). When the alias moves (a promotion or ``ranklab rollback``), the new
version is loaded beside the current one and swapped in with one attribute assignment.
A request reads ``holder.current`` once and scores with that object, so in-flight requests
finish on the model they started with and no request waits for a load. A version that fails
to load or to score is refused once and not retried until the alias moves again; a download
that fails (the registry or its artifact store hiccups) is tried again at the next poll.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from models.pyfunc import load_safe_ranker
from models.registry import ARTIFACT_DIGEST_TAG, Registry, artifact_digest
from ranklab.io import write_json
from ranklab.schema import SESSION_ID

logger = logging.getLogger(__name__)

SOURCE_REGISTRY = "registry"
SOURCE_DISK_CACHE = "disk_cache"
MANIFEST = "last_loaded.json"
KEEP_CACHED_VERSIONS = 3  # the current champion and the ones a rollback would return to
STAGING_PREFIX = ".download-v"  # a download in progress (not matched by the "v*" folders)
STALE_STAGING_SECONDS = 3600  # a staging folder this old was left by a worker that died
NO_SUCH_VERSION = ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)  # MlflowException.error_code
MLMODEL_FILE = "MLmodel"  # marks the model's own folder inside a download
ERROR_CHARS = 300  # database errors quote whole SQL statements; /readyz shows the start


class InvalidScoresError(ValueError):
    """The model returned something other than one finite score per candidate."""


class IncompatibleModelError(ValueError):
    """The model needs inputs the online feature service does not provide."""


class ArtifactDigestError(ValueError):
    """The downloaded bytes are not the ones the gate judged (or none were recorded)."""


class ModelDownloadError(RuntimeError):
    """A version could not be downloaded: the registry or its artifact store failed, not the
    model, so the next poll tries again (a refusal would last until the alias moves)."""


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version, loaded and checked, ready to score one request."""

    name: str
    version: str
    source: str  # SOURCE_REGISTRY or SOURCE_DISK_CACHE
    pyfunc: mlflow.pyfunc.PyFuncModel | None  # None when served from its code-free form
    feature_columns: tuple[str, ...]  # the model's feature inputs (its signature, minus the key)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The ranker rebuilt from safetensors + JSON (models.pyfunc.load_safe_ranker): no
    # unpickling. None: a model without that form, served through its pyfunc.
    ranker: object | None = None
    digest: str | None = None  # sha256 of the artifact, verified against the gate's record

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """One finite score per row of ``features`` (one request: one session)."""
        scores = np.asarray(self._score(features), dtype=np.float64).reshape(-1)
        if scores.shape != (len(features),) or not np.isfinite(scores).all():
            raise InvalidScoresError(
                f"{self.name} v{self.version} returned {scores.shape[0]} scores for "
                f"{len(features)} rows, {int((~np.isfinite(scores)).sum())} not finite"
            )
        return scores

    @cached_property
    def _score(self) -> Callable[[pd.DataFrame], object]:
        """The cheapest call that gives the scores ``pyfunc.predict`` would, picked once.

        - ranklab's pyfunc (``models.pyfunc.RankerModel``): its ``predict_session`` on the
          feature matrix. ``PyFuncModel.predict`` re-checks the input against the signature
          on every call, and the ranker's frame path regroups rows into sessions in pandas:
          together ~2 ms of a ~2.3 ms call, for a request that is one session of float64
          features that ``check_model`` already proved the model accepts. The scores are
          equal (``tests/model/test_session_scoring.py``).
        - any other Python model: its own ``predict`` on the pyfunc frame, without the check;
        - any other flavour: ``pyfunc.predict`` on the pyfunc frame.
        """
        if self.ranker is not None:
            ranker = self.ranker
            return lambda features: ranker.predict_session(self._matrix(features))
        try:
            python_model = self.pyfunc.unwrap_python_model()
        except (AttributeError, MlflowException):
            return lambda features: self.pyfunc.predict(self._pyfunc_frame(features))
        if hasattr(python_model, "predict_session"):
            return lambda features: python_model.predict_session(self._matrix(features))
        return lambda features: python_model.predict(None, self._pyfunc_frame(features))

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        """[n, F] float64 in the model's column order; no copy when the frame already is."""
        if tuple(features.columns) == self.feature_columns:
            return features.to_numpy(dtype=np.float64)
        return features[list(self.feature_columns)].to_numpy(dtype=np.float64)

    def _pyfunc_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """The pyfunc contract: the session key, then the features; one request is one session."""
        return pd.DataFrame(
            {
                SESSION_ID: np.zeros(len(features), dtype=np.int64),
                **{name: features[name].to_numpy() for name in self.feature_columns},
            }
        )

    def describe(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
            "format": "safetensors" if self.ranker is not None else "pyfunc",
            "sha256": self.digest,
        }


def model_feature_columns(pyfunc: mlflow.pyfunc.PyFuncModel | Model) -> tuple[str, ...]:
    """The signature's inputs minus the session key (of a loaded pyfunc, or of an
    ``MLmodel`` file read as plain YAML)."""
    metadata = pyfunc if isinstance(pyfunc, Model) else pyfunc.metadata
    schema = metadata.get_input_schema()
    if schema is None:
        raise IncompatibleModelError("the model has no input signature; serving needs one")
    return tuple(name for name in schema.input_names() if name != SESSION_ID)


class ModelDiskCache:
    """Downloaded model versions under ``root``, and which one last loaded successfully."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, version: str) -> Path:
        return self.root / f"v{version}"

    def download(self, version: str, fetch: Callable[[Path], object]) -> Path:
        """The version's model folder (the one holding ``MLmodel``), downloaded once by
        ``fetch(into)``.

        Each server worker loads the champion itself, at the same moment. A download goes to
        a private staging folder and is renamed into ``v<version>`` whole, so a worker never
        reads (or deletes) another worker's half-written files, and a ``v<version>`` folder
        is always complete: a version's artifacts never change, so it is reused as is.
        """
        folder = self.folder(version)
        if not folder.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=self.root))
            try:
                fetch(staging)
                try:
                    staging.rename(folder)
                except OSError:
                    if not folder.is_dir():
                        raise  # not "another worker renamed its copy first": a real failure
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        found = sorted(folder.rglob(MLMODEL_FILE))
        if not found:
            raise FileNotFoundError(f"no {MLMODEL_FILE} under {folder}: not a model download")
        return found[0].parent

    def remember(self, model: LoadedModel, path: Path) -> None:
        """Record ``model`` (and its verified digest) as the last good one, atomically, and
        drop old downloads."""
        write_json(
            {
                "name": model.name,
                "version": model.version,
                "path": str(path),
                "sha256": model.digest,
            },
            self.root / MANIFEST,
        )
        self._prune(keep=model.version)

    def forget(self, version: str) -> None:
        """Delete a version's download (its bytes failed verification)."""
        shutil.rmtree(self.folder(version), ignore_errors=True)

    def last_loaded(self) -> tuple[str, str, Path, str | None] | None:
        """(name, version, model folder, digest) of the last good model, if one is cached."""
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            return None
        record = json.loads(manifest.read_text(encoding="utf-8"))
        path = Path(record["path"])
        if not path.is_dir():
            return None
        return record["name"], str(record["version"]), path, record.get("sha256")

    def _prune(self, keep: str) -> None:
        for staging in self.root.glob(f"{STAGING_PREFIX}*"):  # left by a worker that died
            if time.time() - staging.stat().st_mtime > STALE_STAGING_SECONDS:
                shutil.rmtree(staging, ignore_errors=True)
        folders = sorted(
            (p for p in self.root.glob("v*") if p.is_dir() and p.name != f"v{keep}"),
            key=lambda p: p.stat().st_mtime,
        )
        for stale in folders[: max(0, len(folders) - (KEEP_CACHED_VERSIONS - 1))]:
            shutil.rmtree(stale, ignore_errors=True)


class ChampionLoader:
    """Loads a registry version (through the disk cache) and checks it before use.

    ``check(model)`` raises when the model cannot serve: it is given the loaded model and
    should score a probe frame built from the served feature columns.
    """

    def __init__(
        self,
        registry: Registry,
        cache: ModelDiskCache,
        check: Callable[[LoadedModel], None],
        require_digest: bool = True,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.check = check
        self.require_digest = require_digest

    def champion_version(self) -> str | None:
        """Where ``champion`` points now (None when unset); raises when the registry is down."""
        version = self.registry.champion_version()
        return None if version is None else str(version.version)

    def load_version(self, version: str) -> LoadedModel:
        path = self._download(version)
        try:
            digest = self._verify(version, path, self._recorded_digest(version))
        except ArtifactDigestError:
            self.cache.forget(version)  # the next try downloads afresh
            raise
        model = self._load(self.registry.model_name, version, path, SOURCE_REGISTRY, digest)
        self.cache.remember(model, path)
        return model

    def _recorded_digest(self, version: str) -> str | None:
        try:
            return self.registry.artifact_digest(version)
        except MlflowException as error:
            raise ModelDownloadError(f"reading v{version}'s digest failed: {error}") from error

    def _verify(self, version: str, path: Path, expected: str | None) -> str | None:
        """The folder's digest, when it equals ``expected`` (the gate's record); raises
        ``ArtifactDigestError`` otherwise, before a byte of the model is interpreted."""
        if expected is None:
            if self.require_digest:
                raise ArtifactDigestError(
                    f"v{version} has no recorded {ARTIFACT_DIGEST_TAG}: it was not judged by "
                    "the gate (RANKLAB_SERVING__REQUIRE_ARTIFACT_DIGEST=false serves it anyway)"
                )
            return None
        actual = artifact_digest(path)
        if actual != expected:
            raise ArtifactDigestError(
                f"v{version}'s artifact has sha256 {actual[:16]}..., the gate approved "
                f"{expected[:16]}...: refusing bytes that are not the ones judged"
            )
        return actual

    def _download(self, version: str) -> Path:
        """The version's model folder in the disk cache. ModelDownloadError when the registry
        or the artifact store failed; a version the registry does not have is refused."""
        client = self.registry.client
        try:
            uri = client.get_model_version_download_uri(self.registry.model_name, version)
        except MlflowException as error:
            if error.error_code == NO_SUCH_VERSION:
                raise  # retrying will not make it appear
            raise ModelDownloadError(f"asking where v{version} lies failed: {error}") from error
        try:
            return self.cache.download(
                version,
                lambda into: mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(into)
                ),
            )
        except (MlflowException, OSError) as error:
            raise ModelDownloadError(f"downloading v{version} failed: {error}") from error

    def load_cached(self) -> LoadedModel | None:
        cached = self.cache.last_loaded()
        if cached is None:
            return None
        name, version, path, digest = cached
        # The registry is down: the digest recorded when the download was verified.
        digest = self._verify(version, path, digest)
        return self._load(name, version, path, SOURCE_DISK_CACHE, digest)

    def _load(
        self, name: str, version: str, path: Path, source: str, digest: str | None
    ) -> LoadedModel:
        """The code-free form when the model has one (no unpickling), else its pyfunc."""
        ranker = load_safe_ranker(path)
        if ranker is not None:
            columns = model_feature_columns(Model.load(str(path / MLMODEL_FILE)))
            model = LoadedModel(name, version, source, None, columns, ranker=ranker, digest=digest)
        else:
            pyfunc = mlflow.pyfunc.load_model(str(path))
            columns = model_feature_columns(pyfunc)
            model = LoadedModel(name, version, source, pyfunc, columns, digest=digest)
        self.check(model)
        return model


@dataclass
class ChampionStatus:
    """What /readyz reports about the registry (its ``registry`` section)."""

    reachable: bool | None = None  # None: not asked yet
    error: str | None = None
    champion_version: str | None = None  # where the alias pointed when last asked
    refused_versions: dict[str, str] = field(default_factory=dict)  # version -> why refused
    last_poll: str | None = None


class ChampionHolder:
    """The model in use (``current``), following the ``champion`` alias when polled.

    ``on_swap(model)`` is called after each successful swap, ``on_refused(version, error)``
    after a version fails to load (the metrics hooks).
    """

    def __init__(
        self,
        loader: ChampionLoader,
        on_swap: Callable[[LoadedModel], None] = lambda model: None,
        on_refused: Callable[[str, Exception], None] = lambda version, error: None,
        on_download_failed: Callable[[str, Exception], None] = lambda version, error: None,
    ) -> None:
        self.loader = loader
        self.current: LoadedModel | None = None
        self.status = ChampionStatus()
        self.start_note: str | None = None  # how start-up went when not from the registry
        self._on_swap = on_swap
        self._on_refused = on_refused
        self._on_download_failed = on_download_failed

    # ---- start-up ----
    def load_initial(self) -> LoadedModel | None:
        """The champion from the registry; else the last good model on disk; else None."""
        self.poll()
        if self.current is not None:
            return self.current
        try:
            cached = self.loader.load_cached()
        except Exception as error:  # noqa: BLE001 - a corrupt cache means "popularity only"
            logger.exception("cached champion failed to load")
            self.start_note = f"cached model failed to load: {error}"
            return None
        if cached is None:
            self.start_note = "no champion from the registry and none cached on disk"
            return None
        why = self.status.error or "no champion in the registry"
        self.start_note = f"started from the disk cache ({why})"
        self._swap(cached)
        return cached

    # ---- following the alias ----
    def poll_once(self) -> None:
        """Ask where ``champion`` points; load and swap when it moved. Raises if unreachable."""
        version = self.loader.champion_version()
        self.status.reachable, self.status.error = True, None
        self.status.champion_version = version
        self.status.last_poll = datetime.now(UTC).isoformat(timespec="seconds")
        current = self.current
        if version is None or version in self.status.refused_versions:
            return
        if current is not None and current.version == version:
            return
        try:
            model = self.loader.load_version(version)
        except ModelDownloadError as error:
            logger.warning("champion v%s not downloaded; next poll tries again: %s", version, error)
            self.status.error = f"{error}"[:ERROR_CHARS]
            self._on_download_failed(version, error)
            return
        except Exception as error:  # noqa: BLE001 - a bad version must not stop the service
            logger.exception("champion v%s refused", version)
            self.status.refused_versions[version] = f"{type(error).__name__}: {error}"[:ERROR_CHARS]
            self._on_refused(version, error)
            return
        self._swap(model)

    def poll(self) -> None:
        """``poll_once``, recording an unreachable registry instead of raising: keep serving."""
        try:
            self.poll_once()
        except Exception as error:  # noqa: BLE001 - any registry failure means "keep the model"
            self._registry_down(error)

    def _registry_down(self, error: Exception) -> None:
        if self.status.reachable is not False:
            logger.warning("model registry unreachable: %s", error)
        self.status.reachable = False
        message = f"{type(error).__name__}: {error}"
        self.status.error = f"registry unreachable: {message[:ERROR_CHARS]}"

    def _swap(self, model: LoadedModel) -> None:
        previous, self.current = self.current, model  # one assignment: readers see old or new
        logger.info(
            "serving %s v%s from %s (was %s)",
            model.name,
            model.version,
            model.source,
            "none" if previous is None else f"v{previous.version}",
        )
        self._on_swap(model)
