"""The models behind a running experiment's arms, and which one serves each request.

``ExperimentRouter`` is the service's side of ``serving/experiment.py``. On every round of
the runtime's poller (``refresh``) it re-reads ``<state>/serving/experiment.json`` and makes
sure each arm's model is loaded; on every request (``route``) it hashes the user into an
arm and hands back that arm's model holder. Starting, changing or stopping an experiment is
a file write (``ranklab experiment start|stop``): no restart.

Each arm's model is held exactly like the champion, by a ``ChampionHolder``: loaded from the
registry into a disk cache, checked against the served features (an incompatible model is
refused), and swapped when its alias moves (``alias:challenger`` follows the challenger).
An arm on ``alias:champion`` shares the service's own champion holder. Arm downloads live in
their own cache folder, so they never become the champion's start-up fallback.

An exposure must mean "served by this arm's model (or its fallback chain)", so an experiment
whose arms are not all loaded is *paused*: everyone gets the champion with no arm logged,
and ``/readyz`` says which arm is missing its model and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.registry import Registry
from serving.champion import ChampionHolder, ChampionLoader, LoadedModel, ModelDiskCache
from serving.experiment import (
    ExperimentConfig,
    ExperimentConfigError,
    ModelRef,
    assign_arm,
    load_experiment,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exposure:
    """Which experiment and arm a request belongs to (None: no experiment) and its model."""

    experiment: str | None
    arm: str | None
    holder: ChampionHolder


class ArmLoader(ChampionLoader):
    """A ``ChampionLoader`` that follows an arm's model reference instead of ``champion``."""

    def __init__(
        self,
        registry: Registry,
        cache: ModelDiskCache,
        check: Callable[[LoadedModel], None],
        ref: ModelRef,
        require_digest: bool = True,
    ) -> None:
        super().__init__(registry, cache, check, require_digest)
        self.ref = ref

    def champion_version(self) -> str | None:
        """The version the arm names: fixed for ``version:N``, where the alias points now."""
        if self.ref.kind == "version":
            return self.ref.value  # a missing version is refused when it fails to download
        version = self.registry.version_for_alias(self.ref.value)
        return None if version is None else str(version.version)


def arm_holder_factory(
    registry: Registry,
    cache_root: Path,
    check: Callable[[LoadedModel], None],
    require_digest: bool = True,
) -> Callable[[ModelRef], ChampionHolder]:
    """Builds a holder per arm model, each with its own disk-cache folder under ``cache_root``."""

    def make(ref: ModelRef) -> ChampionHolder:
        cache = ModelDiskCache(Path(cache_root) / f"{ref.kind}-{ref.value}")
        return ChampionHolder(ArmLoader(registry, cache, check, ref, require_digest))

    return make


def resolve_arms(registry: Registry, config: ExperimentConfig) -> dict[str, str]:
    """Arm name -> the registry version it would be served by now; raises when one has none.

    ``ranklab experiment start`` checks this before writing the file, so a typo in an alias
    is an error at the command line rather than a paused experiment in /readyz.
    """
    from mlflow.exceptions import MlflowException

    versions, problems = {}, []
    for arm in config.arms:
        ref = arm.model_ref
        try:
            if ref.kind == "version":
                versions[arm.name] = str(registry.version(ref.value).version)
                continue
            found = registry.version_for_alias(ref.value)
        except MlflowException as error:
            problems.append(f"arm {arm.name!r}: {arm.model} is not in the registry ({error})")
            continue
        if found is None:
            problems.append(f"arm {arm.name!r}: alias {ref.value!r} points at no version")
        else:
            versions[arm.name] = str(found.version)
    if problems:
        raise ExperimentConfigError("; ".join(problems))
    return versions


@dataclass(frozen=True)
class _Live:
    """A validated experiment with every arm's holder: swapped in whole, read once a request."""

    config: ExperimentConfig
    holders: Mapping[str, ChampionHolder]  # arm name -> holder


@dataclass
class ExperimentStatus:
    """What /readyz reports in its ``experiment`` section."""

    config: dict[str, Any] | None = None  # the file's content, as validated
    state: str = "none"  # none | invalid | paused | disabled | scheduled | running | ended
    note: str | None = None  # why it is invalid or paused
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm -> its model
    last_read: str | None = None


class ExperimentRouter:
    """Routes each request to its arm's model while an experiment runs; else to the champion."""

    def __init__(
        self,
        path: Path,
        champion: ChampionHolder,
        make_holder: Callable[[ModelRef], ChampionHolder],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = Path(path)
        self.champion = champion
        self._make_holder = make_holder
        self._clock = clock
        self._holders: dict[str, ChampionHolder] = {}  # "alias:challenger" -> holder
        self._live: _Live | None = None
        self.status = ExperimentStatus()

    # ---- the request ----
    def route(self, user_id: int) -> Exposure:
        live = self._live  # read once: a refresh mid-request does not affect it
        if live is None or not live.config.is_running(self._clock()):
            return Exposure(None, None, self.champion)
        arm = assign_arm(user_id, live.config)
        return Exposure(live.config.name, arm, live.holders[arm])

    # ---- the poller ----
    def refresh(self) -> None:
        """Re-read the experiment file and load (or follow) each arm's model."""
        self.status.last_read = self._clock().isoformat(timespec="seconds")
        try:
            config = load_experiment(self.path)
        except ExperimentConfigError as error:
            # The file is the truth: one that does not validate runs no experiment.
            self._stop("invalid", str(error), None)
            logger.error("experiment stopped: %s", error)
            return
        if config is None:
            self._stop("none", None, None)
            return
        if not config.enabled:
            self._stop("disabled", None, config)  # stopped: its models are let go
            return
        holders = {arm.name: self._holder(arm.model_ref) for arm in config.arms}
        self._forget_unused(set(map(id, holders.values())))
        self.status.config = config.model_dump(mode="json")
        self.status.arms = {name: _describe(held) for name, held in holders.items()}
        missing = {name: held for name, held in holders.items() if held.current is None}
        if missing:
            self._stop("paused", _why_missing(config, missing), config)
            return
        if self._live is None or self._live.config != config:
            logger.info("experiment %r: %s", config.name, self.describe_arms(config, holders))
        self._live = _Live(config, holders)
        self.status.state, self.status.note = self._state(config), None

    def describe(self) -> dict[str, Any]:
        """The ``experiment`` section of /readyz (state read now: the window may have moved)."""
        live = self._live
        if live is not None:
            self.status.state = self._state(live.config)
        return {
            "state": self.status.state,
            "note": self.status.note,
            "config": self.status.config,
            "arms": self.status.arms,
            "last_read": self.status.last_read,
            "file": str(self.path),
        }

    @staticmethod
    def describe_arms(config: ExperimentConfig, holders: Mapping[str, ChampionHolder]) -> str:
        total = sum(arm.weight for arm in config.arms)
        return ", ".join(
            f"{arm.name}={arm.model} (v{holders[arm.name].current.version}, "  # type: ignore[union-attr]
            f"{arm.weight / total:.0%})"
            for arm in config.arms
        )

    def _holder(self, ref: ModelRef) -> ChampionHolder:
        if ref.is_champion:
            return self.champion  # the service already follows it
        key = str(ref)
        held = self._holders.get(key)
        if held is None:
            held = self._holders[key] = self._make_holder(ref)
            held.load_initial()  # registry, else this arm's disk cache
        else:
            held.poll()  # follows an alias that moved; refuses a version that fails
        return held

    def _forget_unused(self, in_use: set[int]) -> None:
        for key in [k for k, held in self._holders.items() if id(held) not in in_use]:
            del self._holders[key]  # the model is freed once no request holds it

    def _stop(self, state: str, note: str | None, config: ExperimentConfig | None) -> None:
        if self._live is not None:
            logger.info("experiment %r stopped (%s): everyone gets the champion", state, note)
        self._live = None
        self.status.state, self.status.note = state, note
        if config is None or not config.enabled:
            self.status.config = None if config is None else config.model_dump(mode="json")
            self.status.arms = {}
            self._forget_unused(set())

    def _state(self, config: ExperimentConfig) -> str:
        now = self._clock()
        if not config.enabled:
            return "disabled"
        if config.start is not None and now < config.start:
            return "scheduled"
        if config.end is not None and now >= config.end:
            return "ended"
        return "running"


def _describe(held: ChampionHolder) -> dict[str, Any]:
    model = held.current
    return {
        "model": None if model is None else model.describe(),
        "refused_versions": dict(held.status.refused_versions),
        "registry_error": held.status.error,
    }


def _why_missing(config: ExperimentConfig, missing: Mapping[str, ChampionHolder]) -> str:
    reasons = []
    for name, held in missing.items():
        status, ref = held.status, config.arm(name).model
        refused = "; ".join(f"v{v}: {why}" for v, why in status.refused_versions.items())
        unset = status.reachable and status.champion_version is None
        why = refused or status.error or (f"{ref} points at no version" if unset else "not loaded")
        reasons.append(f"arm {name!r} ({ref}) has no model: {why}")
    return "paused, everyone gets the champion: " + " | ".join(reasons)
