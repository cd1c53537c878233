"""MLflow tracking and model registry behind one small class (local SQLite by default).

One training = one MLflow run: its parameters, metrics (overall and per slice), files
(evaluation JSON, slice table CSV, plots, model card) and lineage tags, and the ranker
logged as a pyfunc and registered as a new version of ``ranker``.

Aliases are the deployment state:
- ``champion``: what serving loads. Only ``models.gate.promote`` moves it forward (through
  ``promote_champion``), and only ``rollback`` moves it back.
- ``challenger``: a working candidate that did not beat the champion (for an A/B test).
- ``previous_champion``: where ``rollback`` returns to.
The full promotion history is a registered-model tag (``champion_history``, oldest first),
so rollback can step back more than once, and every move is stamped on the versions it
touched (when, by whom, why).

``Registry(settings)`` has no side effects: the SQLite database and its folder are created
on the first call that needs them.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from models.base import Ranker
from models.evaluation import ModelEvaluation
from models.metrics import PRIMARY_METRIC
from models.model_card import TrainingSummary
from models.pyfunc import log_ranker
from ranklab.schema import LABEL, TrainingSet
from ranklab.settings import REPO_ROOT, Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
# Aliases that record promotion history: only promote_champion and rollback may set them.
MANAGED_ALIASES = (CHAMPION, PREVIOUS_CHAMPION)
CHAMPION_HISTORY_TAG = "champion_history"

EXAMPLE_ROWS = 5  # rows of the training frame stored as the model's input example
# The sha256 of the artifact the gate judged (``artifact_digest``), a version tag: serving
# refuses a download whose digest differs (serving/champion.py).
ARTIFACT_DIGEST_TAG = "artifact.sha256"
MLMODEL_FILE = "MLmodel"  # marks the model's own folder inside a download
# MLflow writes this into the model folder (the artifact store's own folder, when the store
# is local) whenever the model is loaded by a ``models:/`` URI: its name and version, not
# the model. It appears after the gate judged the bytes, so it is not part of the digest;
# serving never reads it.
REGISTERED_MODEL_META = "registered_model_meta"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (no champion, nothing to roll back to...)."""


@dataclass(frozen=True)
class Lineage:
    """Where a model came from: tags on its run and on its registered version."""

    data_hash: str  # content hash of the training set (see ``hash_frame``)
    feature_views: tuple[str, ...]
    feature_service: str
    training_rows: int  # rows of the train split the model was fitted on
    code_version: str = field(default_factory=lambda: git_commit())

    @classmethod
    def of(
        cls, training_set: TrainingSet, feature_views: Sequence[str], feature_service: str
    ) -> Lineage:
        return cls(
            data_hash=hash_frame(training_set.frame),
            feature_views=tuple(feature_views),
            feature_service=feature_service,
            training_rows=len(training_set.part("train")),
        )

    def as_tags(self) -> dict[str, str]:
        return {
            "lineage.code_version": self.code_version,
            "lineage.data_hash": self.data_hash,
            "lineage.feature_views": ",".join(self.feature_views),
            "lineage.feature_service": self.feature_service,
            "lineage.training_rows": str(self.training_rows),
        }


@dataclass(frozen=True)
class LoggedRanker:
    """What ``log_training_run`` created: the run and the registered version."""

    run_id: str
    version: str
    model_uri: str  # models:/ranker/<version>
    model_name: str = ""  # which model of the line-up it is (e.g. ranker_ipw)


class Registry:
    """The MLflow tracking server and model registry named by the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_name = settings.mlflow.registered_model
        self.tracking_uri = settings.mlflow_tracking_uri

    @cached_property
    def client(self) -> MlflowClient:
        if self.settings.profile == "local":
            # SQLite creates the database file, but not the folder it lives in.
            self.settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
        else:
            # MLflow creates its tables in PostgreSQL, but not the database they live in.
            ensure_postgres_database(self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # ---- tracking ---------------------------------------------------------------------------

    def experiment_id(self) -> str:
        """The training experiment, created with an explicit artifact location on first use."""
        name = self.settings.mlflow.experiment
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        return self.client.create_experiment(
            name, artifact_location=self.settings.mlflow_artifact_location
        )

    def log_training_run(
        self,
        ranker: Ranker,
        training_set: TrainingSet,
        evaluation: ModelEvaluation,
        lineage: Lineage,
        params: Mapping[str, object],
        artifacts: Sequence[Path] = (),
        split: str = "test",
    ) -> LoggedRanker:
        """Record one training run and register its ranker as a new version.

        ``evaluation`` is the ranker's evaluation on ``split``; ``artifacts`` are extra files
        (plots, model card) copied into the run as they are.
        """
        missing = [str(path) for path in artifacts if not Path(path).is_file()]
        if missing:
            raise FileNotFoundError(f"log_training_run: artifacts not found: {missing}")
        experiment_id = self.experiment_id()
        with self.activated(), mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.set_tags({**lineage.as_tags(), "model.name": ranker.name})
            mlflow.log_params({str(key): value for key, value in params.items()})
            mlflow.log_metrics(evaluation_metrics(evaluation, split))
            mlflow.log_dict(evaluation_record(evaluation), f"evaluation/{split}.json")
            mlflow.log_text(evaluation.slices.to_csv(index=False), f"evaluation/{split}_slices.csv")
            mlflow.log_dict(TrainingSummary.of(training_set).to_dict(), "training_set.json")
            for path in artifacts:
                mlflow.log_artifact(str(path))
            example = training_set.part("train").head(EXAMPLE_ROWS)
            info = log_ranker(ranker, example, registered_model_name=self.model_name)
        version = str(info.registered_model_version)
        self.tag_version(version, {**lineage.as_tags(), "model.name": ranker.name})
        return LoggedRanker(run.info.run_id, version, self.model_uri(version), ranker.name)

    def log_artifacts(self, run_id: str, paths: Sequence[Path], folder: str | None = None) -> None:
        """Add files to a finished run (the model card and gate report come after training)."""
        for path in paths:
            self.client.log_artifact(run_id, str(path), artifact_path=folder)

    # ---- registry ---------------------------------------------------------------------------

    def model_uri(self, alias_or_version: str | int) -> str:
        """``models:/ranker/3`` for a version, ``models:/ranker@champion`` for an alias."""
        reference = str(alias_or_version).lstrip("@")
        if reference.isdigit():
            return f"models:/{self.model_name}/{reference}"
        return f"models:/{self.model_name}@{reference}"

    def load(self, alias_or_version: str | int) -> mlflow.pyfunc.PyFuncModel:
        """Load a registered ranker by alias (``"champion"``) or version (``3``)."""
        with self.activated():
            return mlflow.pyfunc.load_model(self.model_uri(alias_or_version))

    def version(self, version: str | int) -> ModelVersion:
        return self.client.get_model_version(self.model_name, str(version))

    def aliases(self) -> dict[str, str]:
        """Alias -> version for the registered model (empty before the first version)."""
        model = self._registered_model()
        return {} if model is None else {alias: str(v) for alias, v in model.aliases.items()}

    def version_for_alias(self, alias: str) -> ModelVersion | None:
        """The version an alias points at, or None when the alias is unset."""
        version = self.aliases().get(alias)
        return None if version is None else self.version(version)

    def champion_version(self) -> ModelVersion | None:
        return self.version_for_alias(CHAMPION)

    def tag_version(self, version: str | int, tags: Mapping[str, object]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), key, str(value))

    def set_alias(self, alias: str, version: str | int) -> None:
        """Point ``alias`` (e.g. ``challenger``) at ``version``; not ``champion`` (the gate's)."""
        if alias in MANAGED_ALIASES:
            raise RegistryError(
                f"alias {alias!r} is moved only by the promotion gate (models.gate.promote) "
                "or Registry.rollback, which keep its history"
            )
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        if alias in MANAGED_ALIASES:
            raise RegistryError(f"alias {alias!r} is managed by the gate and rollback")
        self.client.delete_registered_model_alias(self.model_name, alias)

    def champion_history(self) -> list[str]:
        """Versions that have been champion, oldest first, ending with the current one."""
        model = self._registered_model()
        recorded = "" if model is None else model.tags.get(CHAMPION_HISTORY_TAG, "")
        return [version for version in recorded.split(",") if version]

    def promote_champion(self, version: str | int, audit: Mapping[str, object]) -> None:
        """Make ``version`` the champion. Called by ``models.gate.promote`` only.

        ``audit`` (the gate's decision, or the forced-promotion reason) is stamped on the
        version together with when and by whom it was promoted.
        """
        version = str(version)
        current = self._champion_number()
        if current == version:
            raise RegistryError(f"version {version} is already the champion")
        history = self.champion_history()
        if current is not None:
            self.tag_version(current, {"champion.retired_at": utc_now()})
            if not history or history[-1] != current:  # a champion set before history was kept
                history.append(current)
        self._set_managed_alias(CHAMPION, version)
        self.tag_version(version, {**audit, **_stamp("champion.promoted")})
        self._set_history([*history, version])

    def rollback(self, reason: str) -> ModelVersion:
        """Point ``champion`` back at the previous champion; returns the restored version.

        The demoted version keeps a record of why; the history loses its last entry, so a
        second rollback goes one step further back.
        """
        if not reason.strip():
            raise ValueError("rollback: give a reason; it is recorded on both versions")
        current, history = self._champion_number(), self.champion_history()
        if current is None or len(history) < 2:
            state = "no champion" if current is None else f"version {current} is the first"
            raise RegistryError(f"rollback: there is no previous champion to restore ({state})")
        if history[-1] != current:
            raise RegistryError(
                f"rollback: champion is v{current} but the history ends with v{history[-1]}; "
                f"was the alias moved outside the gate? ({CHAMPION_HISTORY_TAG}={history})"
            )
        restored = history[-2]
        self._set_managed_alias(CHAMPION, restored)
        demoted = {**_stamp("champion.rolled_back"), "champion.rollback_reason": reason}
        self.tag_version(current, demoted)
        self.tag_version(
            restored, {**_stamp("champion.restored"), "champion.restore_reason": reason}
        )
        self._set_history(history[:-1])
        return self.version(restored)

    # ---- the approved bytes ------------------------------------------------------------------

    def download_version(self, version: str | int, into: Path) -> Path:
        """The version's model folder (the one holding ``MLmodel``), downloaded under ``into``."""
        uri = self.client.get_model_version_download_uri(self.model_name, str(version))
        with self.activated():
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into))
        return model_folder(Path(into))

    def record_artifact_digest(self, version: str | int, digest: str) -> None:
        """Stamp ``digest`` (of the bytes that were judged) on the version."""
        self.tag_version(version, {ARTIFACT_DIGEST_TAG: digest})

    def artifact_digest(self, version: str | int) -> str | None:
        """The digest recorded for the version, or None when none was (not judged)."""
        return self.version(version).tags.get(ARTIFACT_DIGEST_TAG)

    def seal(self, version: str | int) -> str:
        """Download the version, record its digest, return it: what the gate does for the
        versions it judges, for versions registered outside the gate (test fixtures)."""
        with tempfile.TemporaryDirectory(prefix="ranklab-seal-") as tmp:
            digest = artifact_digest(self.download_version(version, Path(tmp)))
        self.record_artifact_digest(version, digest)
        return digest

    @contextmanager
    def activated(self) -> Iterator[None]:
        """Point MLflow's fluent API (start_run, log_model, load_model) here, then restore.

        The fluent API reads process-wide URIs; setting them only for a block keeps two
        registries (e.g. two tests) apart. Use it to load by plain URI, as serving does:
        ``with registry.activated(): mlflow.pyfunc.load_model("models:/ranker@champion")``.
        """
        self.client  # noqa: B018 - creates the local folder before MLflow opens the database
        previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous_tracking)
            mlflow.set_registry_uri(previous_registry)

    # ---- internals --------------------------------------------------------------------------

    def _champion_number(self) -> str | None:
        """The champion's version number as a string (MLflow returns it as an int)."""
        return self.aliases().get(CHAMPION)

    def _registered_model(self) -> RegisteredModel | None:
        try:
            return self.client.get_registered_model(self.model_name)
        except MlflowException as error:
            if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                return None
            raise

    def _set_managed_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, version)

    def _set_history(self, history: list[str]) -> None:
        self.client.set_registered_model_tag(
            self.model_name, CHAMPION_HISTORY_TAG, ",".join(history)
        )
        if len(history) >= 2:
            self._set_managed_alias(PREVIOUS_CHAMPION, history[-2])
        elif PREVIOUS_CHAMPION in self.aliases():
            self.client.delete_registered_model_alias(self.model_name, PREVIOUS_CHAMPION)


# ---- artifact digests ---------------------------------------------------------------------------


def artifact_digest(folder: Path) -> str:
    """sha256 over a model folder: every file's relative path and content, in path order.

    A changed, added, removed or renamed file changes it; where the folder lies does not.
    MLflow's ``registered_model_meta`` bookkeeping file is left out (see its constant).
    """
    folder = Path(folder)
    outer = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file() and p != folder / REGISTERED_MODEL_META)
    for path in sorted(files):
        inner = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(f"{path.relative_to(folder).as_posix()}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


def model_folder(download: Path) -> Path:
    """The folder holding ``MLmodel`` inside a download (MLflow may nest it)."""
    found = sorted(Path(download).rglob(MLMODEL_FILE))
    if not found:
        raise FileNotFoundError(f"no {MLMODEL_FILE} under {download}: not a model download")
    return found[0].parent


# ---- records logged with a run ----------------------------------------------------------------


def metric_key(name: str) -> str:
    """An MLflow-safe metric name: "slice.device=mobile.ndcg@10" becomes
    "slice.device_mobile.ndcg_at_10" (MLflow allows letters, digits, ``_ - . / :`` and space).
    """
    return re.sub(r"[^\w.\-/: ]", "_", name.replace("@", "_at_"))


def evaluation_metrics(evaluation: ModelEvaluation, split: str = "test") -> dict[str, float]:
    """Every estimate as three metrics (mean, CI bounds) plus the slice means and counts.

    Metrics on the observed label are ``<split>.<metric>``; on another gain (the debiased
    label) ``<split>.<gain>.<metric>``; slices ``slice.<column>=<value>.<metric>``.
    """
    metrics: dict[str, float] = {}
    for gain, estimates in evaluation.overall.items():
        prefix = split if gain == LABEL else f"{split}.{gain}"
        for metric, estimate in estimates.items():
            metrics[f"{prefix}.{metric}"] = estimate.mean
            metrics[f"{prefix}.{metric}.ci_lo"] = estimate.lo
            metrics[f"{prefix}.{metric}.ci_hi"] = estimate.hi
    for row in evaluation.slices.itertuples(index=False):
        metrics[f"slice.{row.slice}={row.value}.{PRIMARY_METRIC}"] = float(row.mean)
        metrics[f"slice.{row.slice}={row.value}.n_sessions"] = float(row.n_sessions)
    return {metric_key(name): value for name, value in metrics.items()}


def evaluation_record(evaluation: ModelEvaluation) -> dict[str, object]:
    """The evaluation as plain JSON: estimates per gain and metric, and the slice tables."""
    return {
        "model": evaluation.model,
        "no_relevant": dict(evaluation.no_relevant),
        "overall": {
            gain: {
                metric: {"mean": e.mean, "lo": e.lo, "hi": e.hi, "n": e.n}
                for metric, e in estimates.items()
            }
            for gain, estimates in evaluation.overall.items()
        },
        "slices": {
            gain: table.to_dict(orient="records")
            for gain, table in evaluation.slices_by_gain.items()
        },
    }


def hash_frame(frame: pd.DataFrame) -> str:
    """A content hash of a frame (columns, dtypes and values; row order matters)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def git_commit() -> str:
    """The checked-out commit of the repository, or "unknown" outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def utc_now() -> str:
    """The time of an audited event, as tags record it (UTC, ISO 8601)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _stamp(event: str) -> dict[str, str]:
    """When and by whom: ``{event}_at`` and ``{event}_by`` tags."""
    return {f"{event}_at": utc_now(), f"{event}_by": current_user()}


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


POSTGRES_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # an unquoted PostgreSQL identifier


def ensure_postgres_database(uri: str) -> bool:
    """Create the PostgreSQL database ``uri`` names when the server lacks it (True: created).

    Connects to the server's ``postgres`` maintenance database; raises ``ConnectionError``
    naming the server when it cannot be reached, before MLflow retries for a minute.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    url = make_url(uri)
    name = url.database or ""
    if not POSTGRES_NAME.fullmatch(name):
        raise ValueError(f"MLflow's PostgreSQL database name {name!r} is not a plain identifier")
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if found:
                return False
            connection.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    except OperationalError as error:
        raise ConnectionError(
            f"PostgreSQL at {url.host}:{url.port or 5432} (MLflow's backend in the services "
            f"profile) cannot be reached: {error.orig}"
        ) from error
    finally:
        engine.dispose()
