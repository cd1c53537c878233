"""The BentoML service: ``POST /rank`` over the champion, with the fallback chain.

Run it with ``make serve`` (or ``python -m serving``): 127.0.0.1:3000 by default. Endpoints:

- ``POST /rank``: the ranking contract of ``serving/schemas.py``;
- ``GET /livez``, ``GET /readyz`` (JSON detail), ``GET /metrics`` (Prometheus);
- ``GET /docs.json``: the OpenAPI schema (the property-based tests fuzz it);
- ``GET /playground/``: a page to try the ranker in a browser (``serving/playground.py``).

The class is a thin shell: ``serving/runtime.py`` holds the work. This module is imported by
the BentoML arbiter process as well as by each worker, so it imports only what the class
definition needs; the worker builds the runtime (Feast, MLflow, torch) in ``__init__``.
"""

from __future__ import annotations

import gc
import logging
import sys
import warnings

import bentoml

from ranklab.settings import get_settings
from serving.middleware import ReadinessDetail, RequestGuard
from serving.schemas import RankingContext, RankRequest, RankResponse

RANK_ROUTE = "/rank"


@bentoml.service(
    name="ranking",
    http={"host": "127.0.0.1", "port": 3000},  # loopback unless the operator says otherwise
    workers=1,  # more with BENTOML_CONFIG_OPTIONS="services.ranking.workers=2"
    # BentoML keeps each request's objects alive until its traffic timeout fires (a timer
    # per request). Every request ends within the feature and model budgets (~0.2 s), so a
    # short timeout keeps memory and GC pauses small under load; 60 s (the default) did not.
    traffic={"timeout": 5},
    # The prediction log records every request; a per-request access log line only costs CPU.
    logging={"access": {"enabled": False}},
    # BentoML wraps every request in an OpenTelemetry span even when nothing samples it (the
    # default sample rate is 0): ~15% of the worker's CPU on /rank, measured with py-spy.
    # /rank is left out; drop this to trace it (and set tracing's sample_rate and exporter).
    tracing={"excluded_urls": [RANK_ROUTE]},
)
class RankingService:
    """Ranks candidate items for a user with the registered champion model."""

    def __init__(self) -> None:
        from serving.runtime import RankingRuntime  # heavy: Feast, MLflow, torch

        # BentoML's server logging passes WARNING and up from other packages; model swaps
        # and start-up decisions are INFO and belong in the server log too.
        logging.getLogger("serving").setLevel(logging.INFO)
        # BentoML 1.4.40 reads a deprecated pydantic attribute on every request, and MLflow
        # and Feast reset Python's "warn once" memory on every call: unfiltered, the same
        # deprecation warning was formatted and written to the log for every request.
        warnings.filterwarnings("ignore", message=".*'model_fields' attribute on the instance")
        settings = get_settings()
        sys.setswitchinterval(settings.serving.gil_switch_interval_ms / 1e3)
        self.runtime = RankingRuntime.start(settings)

    @bentoml.on_startup
    def freeze_startup_objects(self) -> None:
        # ~350k long-lived objects exist after start-up; freezing them keeps each full
        # garbage collection from walking them again (it stalled requests ~170 ms).
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def flush(self) -> None:
        """Stop the alias polling and write every queued prediction-log row."""
        self.runtime.close()

    async def __is_ready__(self) -> bool:
        return (await self.runtime.readiness()).ready

    @bentoml.api(route=RANK_ROUTE, input_spec=RankRequest)
    async def rank(
        self,
        user_id: int,
        context: RankingContext,
        candidates: list[int],
        k: int | None = None,
    ) -> RankResponse:
        """Order the candidates for the user, best first; the response says what scored them."""
        return await self.runtime.rank(user_id, context, candidates, k)


if get_settings().serving.playground:
    from serving.playground import PLAYGROUND_PATH, build_app

    RankingService.mount_asgi_app(build_app(), path=PLAYGROUND_PATH)
RankingService.add_asgi_middleware(ReadinessDetail)
RankingService.add_asgi_middleware(RequestGuard)
