"""An A/B experiment: which model each user is served by, decided by a hash, read from a file.

The configuration names the experiment, its arms (each a registry model: an alias or a
version) and their traffic weights, and optionally a window ``[start, end)`` in UTC. The
service re-reads it from ``<state>/serving/experiment.json`` on its poller, so
``ranklab experiment start|stop`` takes effect without a restart. Outside the window, or
when the experiment is disabled or absent, everyone gets the champion and is logged with
no arm.

Assignment is a pure function of (experiment name, user id): ``sha256`` of
``"<experiment>:<user_id>"`` mapped to a number in [0, 1), then cut by the cumulative
normalised weights. Python's ``hash()`` is salted per process, so it would put a user in
different arms on different workers; sha256 is the same everywhere, and salting with the
experiment name re-shuffles users between experiments (no user is "always treatment").
The readout (``monitoring/``) imports ``assign_arm`` so simulations use this same hash.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ranklab.io import write_text

EXPERIMENT_FILE = "experiment.json"
CHAMPION_ALIAS = "champion"
# "alias:champion", "alias:challenger", "version:7": the two ways the registry names a model.
MODEL_REF = re.compile(r"^(?P<kind>alias|version):(?P<value>.+)$")
ALIAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")  # MLflow aliases: no digits-only names
_BUCKET_BITS = 53  # a float holds 53 bits exactly: the bucket is never rounded up to 1.0


class ExperimentConfigError(ValueError):
    """The experiment file cannot be read or does not describe a valid experiment."""


class ModelRef(BaseModel):
    """A parsed arm model reference: a registry alias or a version number."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["alias", "version"]
    value: str

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        match = MODEL_REF.match(ref)
        if match is None:
            raise ValueError(f"model must be 'alias:<name>' or 'version:<number>', got {ref!r}")
        kind, value = match["kind"], match["value"]
        if kind == "version" and not (value.isdigit() and int(value) > 0):
            raise ValueError(f"model {ref!r}: a version must be a positive integer")
        if kind == "alias" and not ALIAS_NAME.match(value):
            raise ValueError(f"model {ref!r}: an alias is letters, digits, '_' or '-'")
        return cls(kind=kind, value=str(int(value)) if kind == "version" else value)

    @property
    def is_champion(self) -> bool:
        return self.kind == "alias" and self.value == CHAMPION_ALIAS

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class Arm(BaseModel):
    """One arm: the users hashed into it are served by ``model``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The arm's name, e.g. 'control' or 'treatment' (logged with each request).",
    )
    model: str = Field(
        description="The registry model serving this arm: 'alias:champion', "
        "'alias:challenger' or 'version:7'."
    )
    weight: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="Share of traffic, relative to the other arms (normalised to sum to 1).",
    )

    @field_validator("model")
    @classmethod
    def _model_ref(cls, model: str) -> str:
        return str(ModelRef.parse(model))  # canonical form: "version:07" -> "version:7"

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef.parse(self.model)


class ExperimentConfig(BaseModel):
    """An A/B (or A/B/n) test: a name, at least two arms, an optional UTC window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The experiment's name; it salts the assignment hash.",
    )
    arms: list[Arm] = Field(description="The arms, in the order their buckets are cut.")
    enabled: bool = Field(True, description="False: everyone gets the champion, no arm logged.")
    start: datetime | None = Field(
        None, description="UTC; before it everyone gets the champion (None: already started)."
    )
    end: datetime | None = Field(
        None, description="UTC, exclusive; from it everyone gets the champion (None: open)."
    )

    @field_validator("arms")
    @classmethod
    def _two_unique_arms(cls, arms: list[Arm]) -> list[Arm]:
        if len(arms) < 2:
            raise ValueError(f"an experiment needs at least 2 arms, got {len(arms)}")
        names = [arm.name for arm in arms]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"arm names must be unique; repeated: {repeated}")
        return arms

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        # A naive time is read as UTC (the contract's clock); an aware one is converted.
        if moment is None:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    @model_validator(mode="after")
    def _window(self) -> ExperimentConfig:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(
                f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})"
            )
        return self

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"experiment {self.name!r} has no arm {name!r}")

    def is_running(self, now: datetime | None = None) -> bool:
        """Enabled and ``now`` (default: the current UTC time) inside ``[start, end)``."""
        now = datetime.now(UTC) if now is None else now
        if not self.enabled:
            return False
        if self.start is not None and now < self.start:
            return False
        return self.end is None or now < self.end


def bucket(user_id: int, experiment: str) -> float:
    """sha256(f"{experiment}:{user_id}") -> a number in [0, 1): stable across processes."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _BUCKET_BITS)) / 2**_BUCKET_BITS


def assign_arm(user_id: int, config: ExperimentConfig) -> str:
    """The arm name for this user: cumulative normalised weights over bucket()."""
    point = bucket(user_id, config.name) * sum(arm.weight for arm in config.arms)
    cumulative = 0.0
    for arm in config.arms:
        cumulative += arm.weight
        if point < cumulative:
            return arm.name
    return config.arms[-1].name  # only when rounding leaves point == the total


def arms_from_specs(specs: list[str], weights: list[float] | None = None) -> list[Arm]:
    """Arms from ``NAME=MODEL`` strings (the CLI's ``--arm``); equal weights unless given."""
    if weights is not None and len(weights) != len(specs):
        raise ExperimentConfigError(
            f"weights: {len(weights)} given for {len(specs)} arms; give one per arm, in order"
        )
    arms = []
    for index, spec in enumerate(specs):
        name, sep, model = spec.partition("=")
        if not sep:
            raise ExperimentConfigError(
                f"arm {spec!r}: expected NAME=MODEL, e.g. treatment=alias:challenger"
            )
        weight = 1.0 if weights is None else weights[index]
        try:
            arms.append(Arm(name=name.strip(), model=model.strip(), weight=weight))
        except ValidationError as error:
            raise ExperimentConfigError(f"arm {spec!r}: {describe_errors(error)}") from error
    return arms


def describe_errors(error: ValidationError) -> str:
    """Pydantic's errors on one line: ``arms.1.weight: Input should be greater than 0; ...``."""
    parts = []
    for detail in error.errors(include_url=False):
        where = ".".join(str(part) for part in detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def experiment_path(state_root: Path) -> Path:
    """Where the service reads the experiment: ``<state>/serving/experiment.json``."""
    return Path(state_root) / "serving" / EXPERIMENT_FILE


def load_experiment(path: Path) -> ExperimentConfig | None:
    """The experiment in ``path``; None when there is no file (no experiment)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ExperimentConfigError(f"cannot read the experiment file {path}: {error}") from error
    try:
        return ExperimentConfig.model_validate_json(text)
    except ValidationError as error:
        raise ExperimentConfigError(
            f"invalid experiment file {path}: {describe_errors(error)}"
        ) from error


def save_experiment(config: ExperimentConfig, path: Path) -> Path:
    """Write ``config`` to ``path`` atomically: the service reads the old file or the new."""
    return write_text(config.model_dump_json(indent=2) + "\n", Path(path))
