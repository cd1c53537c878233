"""The one typed settings object every stage reads.

Values come from, in order of precedence: keyword arguments, environment variables
prefixed ``RANKLAB_`` (nested with ``__``, e.g. ``RANKLAB_DATA__SCALE=0.1``), then the
defaults below. Nothing here touches the disk or the network: building a ``Settings``
has no side effects, and paths are only created by the code that writes to them.

Two profiles:
- ``local`` (default): everything embedded, under ``state_dir`` (SQLite, parquet, files).
- ``services``: the same code against PostgreSQL (MLflow's backend; the database is
  created on first use) and Redis (Feast online store) on loopback. Dagster's run storage
  stays under ``state_dir``: ``dagster-postgres`` is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(_Section):
    """The generated marketplace. ``scale`` multiplies users, items and sessions."""

    seed: int = Field(7, description="Seed for every random draw in the generator.")
    scale: float = Field(1.0, gt=0, le=50, description="Size knob: 1.0 is the default data set.")
    n_users: int = Field(2000, gt=0, description="Users at scale 1.0.")
    n_items: int = Field(1000, gt=0, description="Items at scale 1.0.")
    sessions_per_day: int = Field(100, gt=0, description="Search sessions per day at scale 1.0.")
    n_days: int = Field(60, ge=14, description="Days of logged sessions.")
    start_date: str = Field("2026-08-01", description="First day of the logged sessions (UTC).")
    slate_min: int = Field(20, ge=2, description="Fewest items shown in one session.")
    slate_max: int = Field(30, ge=2, description="Most items shown in one session.")
    logging_randomized_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of logged sessions in which the old service shuffled its top "
        "items at random (the intervention the system estimates position bias from).",
    )
    logging_randomized_top_k: int = Field(
        10, ge=2, description="How many of the top positions that intervention shuffled."
    )


class SplitSettings(_Section):
    """Time-based split: the last days are held out, never shuffled across time."""

    valid_days: int = Field(
        7, ge=1, description="Days before the test days used for early stopping."
    )
    test_days: int = Field(7, ge=1, description="Final days held out for evaluation.")
    warmup_days: int = Field(
        7, ge=0, description="First days dropped from training: trailing features are still empty."
    )


class FeastSettings(_Section):
    project: str = Field("ranklab", description="Feast project name.")
    redis_connection: str = Field(
        "127.0.0.1:6379", description="Redis online store (services profile only)."
    )


class MlflowSettings(_Section):
    experiment: str = Field("ranklab", description="MLflow experiment for training runs.")
    registered_model: str = Field("ranker", description="Registry name of the served model.")
    postgres_uri: str = Field(
        # The driver named: SQLAlchemy 2.1 takes psycopg 3 for a bare postgresql://.
        "postgresql+psycopg2://postgres@127.0.0.1:5432/ranklab_mlflow",
        description="MLflow backend store (services profile only).",
    )


class ServingSettings(_Section):
    """How the ranking service behaves (``serving/``); every time budget is per request."""

    api_key: SecretStr | None = Field(
        None,
        description="When set, every request but the probes and /metrics must send it in the "
        "'x-api-key' header (401 otherwise).",
    )
    playground: bool = Field(
        True,
        description="Serve the playground page at /playground (serving/playground.py): the "
        "page calls POST /rank, and /playground/api/compare scores with two models side by side.",
    )
    max_body_bytes: int = Field(
        64 * 1024,
        gt=0,
        description="Largest request body accepted (413 above). 1000 candidates take ~12 KiB.",
    )
    feature_timeout_ms: float = Field(
        100.0,
        gt=0,
        description="Budget for the online-store read; past it the request falls back "
        "(a locked or slow store). Well above the ~5 ms an uncached 100-item read takes.",
    )
    model_timeout_ms: float = Field(
        100.0,
        gt=0,
        description="Budget for scoring with the champion; past it the request falls back.",
    )
    champion_poll_seconds: float = Field(
        2.0,
        gt=0,
        description="How often the registry is asked where `champion` points. A rollback is "
        "served within this plus the load time (~1 s), inside the 10 s promise.",
    )
    item_cache_ttl_seconds: float = Field(
        60.0,
        ge=0,
        description="How long an item's stored features are reused without reading the online "
        "store: the staleness allowed after a materialization (0 turns the cache off). Item "
        "features are daily snapshots, so a minute is invisible to the model.",
    )
    item_cache_max_items: int = Field(
        200_000, gt=0, description="Items held in the feature cache at most (oldest dropped)."
    )
    log_flush_seconds: float = Field(
        2.0,
        gt=0,
        description="How often the prediction log compacts its write-ahead files into Parquet "
        "(rows are durable before each answer; this is when they become readable).",
    )
    log_flush_rows: int = Field(
        5_000, gt=0, description="Rows that trigger a compaction before the interval."
    )
    gil_switch_interval_ms: float = Field(
        5.0,
        gt=0,
        le=100,
        description="Python's GIL switch interval in each server worker (sys.setswitchinterval). "
        "A request hops between the event loop, the feature thread and the model thread; a "
        "thread that wants the GIL waits up to this long for the one holding it.",
    )
    require_artifact_digest: bool = Field(
        True,
        description="Refuse a model version without the sha256 the gate records "
        "(artifact.sha256). A version whose bytes differ from it is refused regardless.",
    )
    randomized_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of requests whose top items are shown in a random order, so the "
        "system can measure position bias from its own logs (serving/randomization.py). Off by "
        "default; the drift demo runs it at 0.1.",
    )
    randomized_top_k: int = Field(10, ge=2, description="Top positions that intervention shuffles.")


class PrivacySettings(_Section):
    """Personal data the system stores beyond a request (``ranklab/privacy.py``,
    ``docs/data-governance.md``)."""

    pseudonym_key: SecretStr | None = Field(
        None,
        description="Key of the keyed hash (HMAC-SHA256) that replaces user ids wherever they "
        "are stored (the prediction log, monitoring outputs). Set it with "
        "RANKLAB_PRIVACY__PSEUDONYM_KEY (at least 32 characters); never commit it. Unset, the "
        "local profile generates a development key into <state>/secrets/pseudonym.key; the "
        "services profile refuses to start without one.",
    )
    retention_days: int = Field(
        30,
        gt=0,
        description="Days of prediction-log and monitoring partitions kept; the Dagster "
        "schedule `retention_schedule` deletes older ones.",
    )
    retention_cron: str = Field(
        "15 3 * * *", description="When the retention schedule runs (cron, UTC)."
    )


class PositionBiasSettings(_Section):
    """How the system learns position bias from its own logs (``models/propensity.py``)."""

    max_weight: float = Field(
        5.0,
        gt=1,
        description="Largest inverse-propensity weight: caps the variance rare deep clicks add. "
        "Variance over bias: with 20 the gate's 95% interval against popularity on the 7 test "
        "days included 0 where the truth said +0.05; with 5 it did not (models/README.md).",
    )
    n_boot: int = Field(500, ge=100, description="Bootstrap resamples of the curve's intervals.")
    min_sessions: int = Field(
        100,
        ge=1,
        description="Randomised sessions a device needs for a curve of its own; fewer and it "
        "uses the curve pooled over devices.",
    )


class Settings(BaseSettings):
    """Everything configurable in ranklab. Frozen: derive a changed copy with ``model_copy``."""

    model_config = SettingsConfigDict(
        env_prefix="RANKLAB_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    profile: Literal["local", "services"] = Field("local", description="Embedded or real services.")
    state_dir: Path = Field(
        REPO_ROOT / ".state", description="Root of all generated state; `make clean` deletes it."
    )
    seed: int = Field(7, description="Seed for training and bootstrap (data has its own).")
    letor_dir: Path = Field(
        REPO_ROOT.parent / "shared" / "data" / "letor-sample",
        description="Real LETOR data (train.txt, test.txt) for the loader, tests and benchmark.",
    )
    simulation_dir: Path | None = Field(
        None,
        description="The simulated world's own folder (its full tables and ground truth); "
        "default <state_dir>/world. Outside the state folder, nothing the system can see holds "
        "the truth at all (the blind test puts it there).",
    )
    data: DataSettings = DataSettings()
    split: SplitSettings = SplitSettings()
    feast: FeastSettings = FeastSettings()
    mlflow: MlflowSettings = MlflowSettings()
    serving: ServingSettings = ServingSettings()
    position_bias: PositionBiasSettings = PositionBiasSettings()
    privacy: PrivacySettings = PrivacySettings()

    # ---- derived locations (pure functions of state_dir; nothing is created here) ----
    @property
    def root(self) -> Path:
        """``state_dir`` made absolute, so no path depends on the working directory."""
        return Path(self.state_dir).expanduser().resolve()

    @property
    def landing_dir(self) -> Path:
        """Where raw exports arrive (``features/events.py``): the simulated world writes the
        embedded default here; put your own export here to run on real data."""
        return self.root / "landing"

    @property
    def world_dir(self) -> Path:
        """The simulated world's own folder: its full tables and ground truth. Only the
        simulator and its graders read it; the production path never does."""
        if self.simulation_dir is not None:
            return Path(self.simulation_dir).expanduser().resolve()
        return self.root / "world"

    @property
    def raw_dir(self) -> Path:
        """Raw events as generated or loaded: immutable once written."""
        return self.root / "data" / "raw"

    @property
    def feature_dir(self) -> Path:
        """Point-in-time feature tables (the Feast offline store's parquet files)."""
        return self.root / "data" / "features"

    @property
    def training_dir(self) -> Path:
        return self.root / "data" / "training"

    @property
    def feast_dir(self) -> Path:
        return self.root / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.profile == "services":
            return self.mlflow.postgres_uri
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def reports_dir(self) -> Path:
        """Human-readable outputs: evaluation tables, plots, model cards, gate reports."""
        return self.root / "reports"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with keyword overrides (used by tests and the CLI)."""
    return Settings(**overrides)
