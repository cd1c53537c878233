"""One ranking request, scored by the best path available: the champion, else popularity.

This is the request path without HTTP (``serving/runtime.py`` adds the response, metrics and
log; ``serving/service.py`` the HTTP shell):

1. read the online features, within ``feature_timeout`` (one feature thread);
2. score them with the current champion, within ``model_timeout`` (one model thread);
3. on any failure, score with the popularity fallback and say why.

Each blocking step runs on its own single-thread executor: the Feast SQLite store has one
connection, torch is set to one thread, and a store that hangs must not delay scoring. When
a step overruns its budget the request stops waiting and falls back; the stuck call finishes
in its thread and its result is discarded (a queued call that never started is cancelled).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from serving.champion import ChampionHolder
from serving.fallback import FallbackReason, PopularityFallback
from serving.online_features import CandidateFeatures, MissingFeatureError, OnlineFeatureReader
from serving.schemas import FALLBACK_PREFIX, SERVED_BY_MODEL

logger = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_TIMEOUT_S = 1.0  # the readiness read's budget


@dataclass(frozen=True)
class Scored:
    """How one request was scored: scores aligned with the candidates, and by what."""

    scores: np.ndarray
    model_name: str
    model_version: str
    reason: FallbackReason | None  # None: the champion answered
    features: CandidateFeatures | None  # None: the online store was not read

    @property
    def served_by(self) -> str:
        return SERVED_BY_MODEL if self.reason is None else f"{FALLBACK_PREFIX}{self.reason}"


class RankingEngine:
    """Scores (user, query, candidates) with the champion, falling back to popularity."""

    def __init__(
        self,
        features: OnlineFeatureReader,
        champion: ChampionHolder,
        popularity: PopularityFallback,
        feature_timeout_s: float,
        model_timeout_s: float,
    ) -> None:
        self.features = features
        self.champion = champion
        self.popularity = popularity
        self.feature_timeout_s = feature_timeout_s
        self.model_timeout_s = model_timeout_s
        self._feature_thread = ThreadPoolExecutor(1, thread_name_prefix="online-features")
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")

    async def score(
        self,
        user_id: int,
        query_category: str,
        candidates: Sequence[int],
        holder: ChampionHolder | None = None,
    ) -> Scored:
        """Score with ``holder``'s model (an experiment arm's; default: the champion)."""
        holder = self.champion if holder is None else holder
        model = holder.current  # read once: a swap mid-request does not affect it
        if model is None:
            return self._fallback(candidates, FallbackReason.NO_MODEL, None)
        try:
            features = await self._within(
                self._feature_thread,
                self.feature_timeout_s,
                self.features.read,
                user_id,
                query_category,
                candidates,
            )
        except TimeoutError:
            return self._fallback(candidates, FallbackReason.ONLINE_STORE_TIMEOUT, None)
        except MissingFeatureError as error:
            logger.warning("falling back: %s", error)
            return self._fallback(candidates, FallbackReason.FEATURE_MISSING, None)
        except Exception:  # noqa: BLE001 - any store failure is answered by the fallback
            logger.exception("falling back: the online store read failed")
            return self._fallback(candidates, FallbackReason.ONLINE_STORE_UNAVAILABLE, None)
        try:
            scores = await self._within(
                self._model_thread, self.model_timeout_s, model.predict, features.frame
            )
        except TimeoutError:
            return self._fallback(candidates, FallbackReason.MODEL_TIMEOUT, features)
        except Exception:  # noqa: BLE001 - a failing model is answered by the fallback
            logger.exception("falling back: %s v%s failed to score", model.name, model.version)
            return self._fallback(candidates, FallbackReason.MODEL_ERROR, features)
        return Scored(scores, model.name, model.version, None, features)

    async def features_usable(self) -> tuple[bool, str]:
        """Whether the online store answers a small read (for /readyz).

        A probe may wait longer than a request's budget: slow is degraded, not unusable.
        """
        timeout_s = max(self.feature_timeout_s, PROBE_TIMEOUT_S)
        try:
            await self._within(self._feature_thread, timeout_s, self.features.probe)
        except TimeoutError:
            return False, f"online store did not answer in {timeout_s:.1f} s"
        except Exception as error:  # noqa: BLE001 - reported, not raised
            return False, f"online store read failed: {type(error).__name__}: {error}"[:300]
        return True, "online store answered"

    def close(self) -> None:
        self._feature_thread.shutdown(wait=False, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    def _fallback(
        self, candidates: Sequence[int], reason: FallbackReason, features: CandidateFeatures | None
    ) -> Scored:
        scores = self.popularity.score(candidates)
        return Scored(scores, self.popularity.name, self.popularity.version, reason, features)

    @staticmethod
    async def _within(
        executor: ThreadPoolExecutor, timeout_s: float, fn: Callable[..., T], *args: object
    ) -> T:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(executor, fn, *args), timeout_s)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores, best first; ties keep the candidates' order."""
    return np.argsort(-scores, kind="stable")[:k]
