"""The playground: a page to try the ranker in a browser, at ``/playground`` on the service.

Static files (``serving/playground/``: HTML, CSS, JavaScript, no build step) and two small
JSON endpoints, mounted on the BentoML service by ``serving/service.py``:

- ``GET /playground/api/options``: what the page offers: the context vocabulary, sample
  users (a few known ones and a new one), a catalogue sample with each item's category and
  price, and the registry's versions with their aliases;
- ``POST /playground/api/compare``: the same request scored by two models side by side.

**Rank** on the page calls the real ``POST /rank``: experiment assignment, fallbacks and the
prediction log apply as to any client, so what the page shows is what a caller gets.

**Compare** is playground-only, on purpose. ``/rank`` serves one model per request, chosen
by the experiment assignment (``serving/arms.py``); a request field naming a model would let
any caller step around that assignment. ``/compare`` scores with the models it names (the
champion, an alias such as ``challenger``, a version), each loaded and checked as an arm is,
through the same engine and fallback chain, says that it is a comparison, and logs nothing:
it is not served traffic, and no exposure is recorded. ``RANKLAB_SERVING__PLAYGROUND=false``
leaves the whole page off.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from serving.experiment import ModelRef
from serving.schemas import (
    MAX_CANDIDATES,
    Device,
    EntityId,
    QueryCategory,
    RankingContext,
    Region,
)

logger = logging.getLogger(__name__)

PLAYGROUND_PATH = "/playground"
STATIC_DIR = Path(__file__).with_name("playground")
SAMPLE_USERS = 8  # known users offered on the page
SAMPLE_ITEMS = 120  # catalogue items the page draws its candidates from
MODEL_POLL_SECONDS = 5.0  # how often a compared model's alias is followed, at most
MAX_COMPARED_MODELS = 4  # models the playground keeps loaded besides the service's own
COMPARE_NOTE = (
    "Playground comparison: each model scored the same request through the serving engine "
    "and its fallback chain. Not logged, no experiment exposure: POST /rank serves one "
    "model per request, as the experiment assignment decides."
)


class CompareRequest(BaseModel):
    """One ranking request and the two models to score it with."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    user_id: EntityId
    context: RankingContext
    candidates: list[EntityId] = Field(min_length=1, max_length=MAX_CANDIDATES)
    models: list[str] = Field(min_length=2, max_length=2)

    @field_validator("models")
    @classmethod
    def _model_refs(cls, models: list[str]) -> list[str]:
        return [str(ModelRef.parse(ref)) for ref in models]


@dataclass
class _Followed:
    holder: Any  # serving.champion.ChampionHolder
    polled_at: float = field(default_factory=time.monotonic)


class PlaygroundModels:
    """The models ``/compare`` names, each held like an experiment arm (loaded from the
    registry into its own disk cache, checked against the served features)."""

    def __init__(self, runtime: Any) -> None:
        from models.registry import Registry
        from ranklab.settings import get_settings
        from serving.arms import arm_holder_factory
        from serving.runtime import check_model, model_cache_dir

        self.runtime = runtime
        self.settings = get_settings()  # the worker's, as the service's own
        columns = runtime.engine.features.feature_columns
        self.registry = Registry(self.settings)
        self._make = arm_holder_factory(
            self.registry,
            model_cache_dir(self.settings) / "playground",  # never the champion's cache
            check=lambda model: check_model(model, columns),
        )
        self._followed: dict[str, _Followed] = {}
        self._lock = threading.Lock()  # requests ask from worker threads (asyncio.to_thread)

    def holder(self, ref: ModelRef):
        """The holder for ``ref`` (the service's own for the champion); loads on first use."""
        if ref.is_champion:
            return self.runtime.champion
        with self._lock:
            return self._followed_holder(str(ref), ref)

    def _followed_holder(self, key: str, ref: ModelRef):
        followed = self._followed.get(key)
        if followed is None:
            if len(self._followed) >= MAX_COMPARED_MODELS:
                self._followed.pop(next(iter(self._followed)))  # the oldest is let go
            followed = self._followed[key] = _Followed(self._make(ref))
            followed.holder.load_initial()
        elif time.monotonic() - followed.polled_at > MODEL_POLL_SECONDS:
            followed.holder.poll()  # an alias that moved is followed
            followed.polled_at = time.monotonic()
        return followed.holder

    def versions(self) -> list[dict[str, Any]]:
        """The registry's versions, newest first, each with its aliases."""
        by_version: dict[str, list[str]] = {}
        for alias, version in self.registry.aliases().items():
            by_version.setdefault(str(version), []).append(alias)
        found = self.registry.client.search_model_versions(f"name='{self.registry.model_name}'")
        numbers = sorted({str(v.version) for v in found}, key=int, reverse=True)
        return [{"version": n, "aliases": sorted(by_version.get(n, []))} for n in numbers]


# ---- the catalogue the page draws from ----
def _newest(frame, key: str):
    from ranklab.schema import EVENT_TIMESTAMP

    ordered = frame.sort_values(EVENT_TIMESTAMP, kind="stable")
    return ordered.drop_duplicates(key, keep="last")


def catalogue(settings) -> dict[str, Any]:
    """Sample users and items from the feature tables the service's store was built from."""
    import pandas as pd

    from features import aggregates
    from ranklab.schema import ITEM_ID, USER_ID

    items = _newest(
        pd.read_parquet(aggregates.feature_table_path(settings, aggregates.ITEM_ATTRIBUTES)),
        ITEM_ID,
    )
    users = pd.read_parquet(
        aggregates.feature_table_path(settings, aggregates.USER_STATS), columns=[USER_ID]
    )[USER_ID].drop_duplicates()
    rng = np.random.default_rng(7)  # the same sample on every start: a trainer can rehearse
    item_rows = items.iloc[np.sort(rng.permutation(len(items))[:SAMPLE_ITEMS])]
    known = np.sort(rng.choice(users.to_numpy(), min(SAMPLE_USERS, len(users)), replace=False))
    new_user = int(users.max()) + 1
    new_item = int(items[ITEM_ID].max()) + 1
    return {
        "users": [{"user_id": int(u), "label": f"user {u}"} for u in known]
        + [{"user_id": new_user, "label": f"user {new_user} (new: cold start)"}],
        "items": [
            {
                "item_id": int(r[ITEM_ID]),
                "category": str(r["category"]),
                "price": float(r["item_price"]),
            }
            for _, r in item_rows.iterrows()
        ],
        "new_item_id": new_item,
    }


# ---- the endpoints ----
class Playground:
    """The playground's state in one server worker: the catalogue, the compared models."""

    def __init__(self) -> None:
        self._catalogue: dict[str, Any] | None = None
        self._models: PlaygroundModels | None = None

    @staticmethod
    def runtime():
        import bentoml

        return bentoml.get_current_service().runtime

    def models(self) -> PlaygroundModels:
        if self._models is None or self._models.runtime is not self.runtime():
            self._models = PlaygroundModels(self.runtime())
        return self._models

    async def options(self, request: Request) -> JSONResponse:
        runtime = self.runtime()
        if self._catalogue is None:
            self._catalogue = await asyncio.to_thread(catalogue, self.models().settings)
        versions = await asyncio.to_thread(self.models().versions)
        current = runtime.champion.current
        return JSONResponse(
            {
                "contexts": {
                    "device": list(get_args(Device)),
                    "region": list(get_args(Region)),
                    "query_category": list(get_args(QueryCategory)),
                },
                **self._catalogue,
                "versions": versions,
                "champion": None if current is None else current.describe(),
                "experiment": runtime.experiments.describe()["state"],
            }
        )

    async def compare(self, request: Request) -> JSONResponse:
        try:
            body = CompareRequest.model_validate_json(await request.body())
        except ValidationError as error:
            return JSONResponse({"error": "invalid compare request", "detail": _errors(error)}, 400)
        results = [await self._score(body, ModelRef.parse(ref)) for ref in body.models]
        return JSONResponse({"note": COMPARE_NOTE, "results": results})

    async def _score(self, body: CompareRequest, ref: ModelRef) -> dict[str, Any]:
        """One model's answer in /rank's shape (items best first, served_by, cold_start)."""
        from serving.ranking import top_k

        holder = await asyncio.to_thread(self.models().holder, ref)
        scored = await self.runtime().engine.score(
            body.user_id, body.context.query_category, body.candidates, holder
        )
        best = top_k(scored.scores, len(body.candidates))
        features = scored.features  # None: the store was not read, nothing is known
        return {
            "model": str(ref),
            "model_name": scored.model_name,
            "model_version": scored.model_version,
            "served_by": scored.served_by,
            "cold_start": None
            if features is None
            else {"user": features.cold_user, "items": features.cold_items},
            "items": [
                {"item_id": body.candidates[i], "score": float(scored.scores[i])} for i in best
            ],
            "unavailable": None if holder.current is not None else _why_unavailable(holder, ref),
        }


def _why_unavailable(holder, ref: ModelRef) -> str:
    status = holder.status
    refused = "; ".join(f"v{v}: {why}" for v, why in status.refused_versions.items())
    if refused:
        return refused
    if status.error:
        return status.error
    return f"{ref} points at no version"


def _errors(error: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]


def build_app() -> Starlette:
    """The playground's ASGI app, mounted at ``PLAYGROUND_PATH``."""
    playground = Playground()
    return Starlette(
        routes=[
            Route("/api/options", playground.options, methods=["GET"]),
            Route("/api/compare", playground.compare, methods=["POST"]),
            Mount("/", StaticFiles(directory=STATIC_DIR, html=True)),
        ]
    )
