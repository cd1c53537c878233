"""Everything one server worker holds, without BentoML: build it, rank with it, stop it.

``RankingRuntime.start`` wires the parts together in the order a failure should be found:
the popularity fallback (always available), the online feature reader, the champion
(registry, else disk cache, else none), the item-cache warm-up, then the background
threads (the poller: alias, fallback table, item cache, gauges; the prediction log).
``serving/service.py`` wraps it in a BentoML service; nothing here knows about HTTP.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from features.feature_repo.feature_services import RANKER_V1
from features.store import FEATURE_DEFAULTS, feature_store
from models.registry import Registry
from ranklab.privacy import pseudonymiser_for
from ranklab.settings import Settings
from serving.arms import ExperimentRouter, arm_holder_factory
from serving.champion import (
    ChampionHolder,
    ChampionLoader,
    IncompatibleModelError,
    LoadedModel,
    ModelDiskCache,
)
from serving.experiment import experiment_path
from serving.fallback import PopularityFallback
from serving.metrics import ServingMetrics
from serving.online_features import ItemFeatureCache, OnlineFeatureReader
from serving.prediction_log import PredictionLog, PredictionRecord
from serving.randomization import Randomization
from serving.ranking import RankingEngine, Scored, top_k
from serving.schemas import ColdStart, RankedItem, RankingContext, RankResponse

logger = logging.getLogger(__name__)

PROBE_ROWS = 3  # rows of default features a new model must score before it is served
RANKED_ITEMS = TypeAdapter(list[RankedItem])


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: dict[str, Any]


class RankingRuntime:
    """The ranking service's state: engine, champion, fallback, metrics, prediction log."""

    def __init__(
        self,
        engine: RankingEngine,
        champion: ChampionHolder,
        popularity: PopularityFallback,
        metrics: ServingMetrics,
        log: PredictionLog,
        experiments: ExperimentRouter,
        randomization: Randomization | None = None,
    ) -> None:
        self.engine = engine
        self.randomization = randomization or Randomization(share=0.0, top_k=10)
        self.experiments = experiments
        self.champion = champion
        self.popularity = popularity
        self.metrics = metrics
        self.log = log
        self.poller: Poller | None = None

    @classmethod
    def start(cls, settings: Settings, metrics: ServingMetrics | None = None) -> RankingRuntime:
        serving = settings.serving
        metrics = metrics or ServingMetrics()
        popularity = PopularityFallback.for_settings(settings).load()
        cache = ItemFeatureCache(serving.item_cache_ttl_seconds, serving.item_cache_max_items)
        reader = OnlineFeatureReader(feature_store(settings), RANKER_V1, cache)
        champion = _follow_champion(settings, reader.feature_columns, metrics)
        if champion.load_initial() is None:
            metrics.set_served_model(popularity.name, popularity.version, "none")
        experiments = _experiment_router(settings, reader.feature_columns, champion)
        experiments.refresh()  # an experiment running at start-up applies to the first request
        log = PredictionLog(
            settings.root / "predictions",
            flush_seconds=serving.log_flush_seconds,
            flush_rows=serving.log_flush_rows,
            on_written=metrics.log_rows_written.inc,
            pseudonymiser=pseudonymiser_for(settings),
        ).start()
        engine = RankingEngine(
            reader,
            champion,
            popularity,
            feature_timeout_s=serving.feature_timeout_ms / 1e3,
            model_timeout_s=serving.model_timeout_ms / 1e3,
        )
        _warm_item_cache(reader, popularity.item_ids[: serving.item_cache_max_items])
        randomization = Randomization(serving.randomized_share, serving.randomized_top_k)
        runtime = cls(engine, champion, popularity, metrics, log, experiments, randomization)
        background = [
            champion.poll,
            experiments.refresh,
            popularity.refresh,
            reader.refresh_stale,
            runtime.update_gauges,
        ]
        runtime.poller = Poller(serving.champion_poll_seconds, background).start()
        return runtime

    # ---- the request ----
    async def rank(
        self, user_id: int, context: RankingContext, candidates: Sequence[int], k: int | None
    ) -> RankResponse:
        started, received = time.perf_counter(), datetime.now(UTC)
        exposure = self.experiments.route(user_id)  # the champion when no experiment runs
        scored = await self.engine.score(
            user_id, context.query_category, candidates, exposure.holder
        )
        request_id = uuid.uuid4().hex
        best = top_k(scored.scores, len(candidates) if k is None else k)
        best, randomized = self.randomization.apply(request_id, best)
        cold = _cold_start(scored)
        response = RankResponse(
            request_id=request_id,
            items=_ranked_items(candidates, scored.scores, best),
            model_name=scored.model_name,
            model_version=scored.model_version,
            served_by=scored.served_by,
            cold_start=cold,
            experiment=exposure.experiment,
            experiment_arm=exposure.arm,
            randomized_top_k=randomized,
        )
        latency = time.perf_counter() - started
        self.metrics.observe_request(scored.served_by, scored.reason, latency)
        if exposure.experiment is not None and exposure.arm is not None:
            self.metrics.observe_exposure(exposure.experiment, exposure.arm, scored.served_by)
        if cold is not None:
            self.metrics.observe_cold_start(cold.user, len(cold.items))
        self._log(_record(response, received, user_id, context, candidates, scored, latency))
        return response

    def _log(self, record: PredictionRecord) -> None:
        """Write the row before the response leaves (the WAL: it survives a killed worker).

        A WAL that cannot be written (a full disk) does not fail the request: the answer is
        sent unlogged and counted (``ranklab_prediction_log_lost_total``, an alert).
        """
        try:
            self.log.append(record)
        except OSError:
            logger.exception("prediction log: request %s answered unlogged", record.request_id)
            self.metrics.log_rows_lost.inc()

    # ---- operations ----
    async def readiness(self) -> Readiness:
        """Ready when the online store answers and something can rank (champion or fallback)."""
        features_ok, features_note = await self.engine.features_usable()
        model = self.champion.current
        status = self.champion.status
        degraded = self._degraded()
        self.metrics.ready.set(1 if features_ok else 0)
        self.metrics.degraded.set(1 if degraded else 0)
        detail = {
            "ready": features_ok,
            "status": "degraded" if degraded else "ok",
            "worker_pid": os.getpid(),  # each server worker answers for itself
            "model": None if model is None else model.describe(),
            "serving": "champion" if model is not None else f"fallback:{self.popularity.name}",
            "start_note": self.champion.start_note,
            "registry": asdict(status),
            "features": {
                "usable": features_ok,
                "detail": features_note,
                "cached_items": len(self.engine.features.cache),
            },
            "fallback": {
                "name": self.popularity.name,
                "version": self.popularity.version,
                "items": self.popularity.known_items,
            },
            "prediction_log_pending": self.log.pending,
            "experiment": self.experiments.describe(),
        }
        return Readiness(features_ok, detail)

    def _degraded(self) -> bool:
        status = self.champion.status
        return (
            self.champion.current is None
            or status.reachable is False
            or bool(status.refused_versions)
        )

    def update_gauges(self) -> None:
        self.metrics.log_pending.set(self.log.pending)
        self.metrics.degraded.set(1 if self._degraded() else 0)

    def close(self) -> None:
        """Stop polling, then write every queued prediction-log row (graceful shutdown)."""
        if self.poller is not None:
            self.poller.stop()
        self.engine.close()
        self.log.close()


class Poller:
    """Calls each task every ``interval`` seconds on one background thread.

    A task that raises is logged and tried again next time: a registry or file that is
    briefly unavailable must not stop the others.
    """

    def __init__(self, interval: float, tasks: Sequence[Callable[[], object]]) -> None:
        if interval <= 0:
            raise ValueError(f"Poller: interval must be > 0 seconds, got {interval}")
        self.interval = interval
        self.tasks = list(tasks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serving-poller", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for task in self.tasks:
                try:
                    task()
                except Exception:  # noqa: BLE001 - logged; the next round tries again
                    logger.exception("serving poller: %s failed", getattr(task, "__name__", task))


def _follow_champion(
    settings: Settings, served_columns: list[str], metrics: ServingMetrics
) -> ChampionHolder:
    loader = ChampionLoader(
        Registry(settings),
        ModelDiskCache(model_cache_dir(settings)),
        check=lambda model: check_model(model, served_columns),
        require_digest=settings.serving.require_artifact_digest,
    )
    return ChampionHolder(
        loader,
        on_swap=metrics.model_loaded,
        on_refused=metrics.model_refused,
        on_download_failed=metrics.model_download_failed,
    )


def _experiment_router(
    settings: Settings, served_columns: list[str], champion: ChampionHolder
) -> ExperimentRouter:
    """Follows ``<state>/serving/experiment.json``; arm models are checked like the champion."""
    make_holder = arm_holder_factory(
        Registry(settings),
        model_cache_dir(settings) / "arms",  # not a "v*" folder: the champion's prune skips it
        check=lambda model: check_model(model, served_columns),
        require_digest=settings.serving.require_artifact_digest,
    )
    return ExperimentRouter(experiment_path(settings.root), champion, make_holder)


def _warm_item_cache(reader: OnlineFeatureReader, item_ids: Sequence[int]) -> None:
    """Read the catalogue's items before the first request (and warm Feast's read path).

    A store that is down at start-up is not fatal: requests fall back until it answers.
    """
    if reader.cache.ttl_seconds == 0:
        return
    try:
        reader.refresh_items(item_ids)
    except Exception:  # noqa: BLE001 - logged; requests will say why they fall back
        logger.exception("item cache warm-up failed")


def model_cache_dir(settings: Settings) -> Path:
    """Where served model versions are downloaded: the start-up fallback of the registry."""
    return settings.root / "serving" / "model_cache"


def check_model(model: LoadedModel, served_columns: Sequence[str]) -> None:
    """Refuse a model the online features cannot feed, or that cannot score default rows."""
    unserved = [c for c in model.feature_columns if c not in served_columns]
    if unserved:
        raise IncompatibleModelError(
            f"{model.name} v{model.version} needs features the feature service does not serve: "
            f"{unserved}"
        )
    probe = pd.DataFrame(
        {name: np.full(PROBE_ROWS, float(FEATURE_DEFAULTS[name])) for name in served_columns}
    )
    model.predict(probe)


def _ranked_items(
    candidates: Sequence[int], scores: np.ndarray, best: np.ndarray
) -> list[RankedItem]:
    """The best candidates with their scores, validated in one call (not 100 model calls)."""
    ranked = zip((candidates[i] for i in best), scores[best].tolist(), strict=True)
    return RANKED_ITEMS.validate_python([{"item_id": i, "score": s} for i, s in ranked])


def _cold_start(scored: Scored) -> ColdStart | None:
    if scored.features is None:
        return None  # the store was not read: nothing is known about the entities
    return ColdStart(user=scored.features.cold_user, items=scored.features.cold_items)


def _record(
    response: RankResponse,
    received: datetime,
    user_id: int,
    context: RankingContext,
    candidates: Sequence[int],
    scored: Scored,
    latency_s: float,
) -> PredictionRecord:
    features = scored.features
    return PredictionRecord(
        request_id=response.request_id,
        timestamp=received,
        user_id=user_id,
        device=context.device,
        region=context.region,
        query_category=context.query_category,
        candidates=np.asarray(candidates, dtype=np.int64),
        scores=scored.scores,
        k=len(response.items),
        model_name=scored.model_name,
        model_version=scored.model_version,
        served_by=scored.served_by,
        experiment=response.experiment,
        experiment_arm=response.experiment_arm,
        randomized_top_k=response.randomized_top_k,
        shown_order=(
            np.array([item["item_id"] for item in response.items], dtype=np.int64)
            if response.randomized_top_k
            else None
        ),
        latency_ms=latency_s * 1e3,
        cold_user=bool(features and features.cold_user),
        cold_items=[] if features is None else features.cold_items,
        feature_names=() if features is None else tuple(features.frame.columns),
        features=None if features is None else features.frame.to_numpy(),
    )
