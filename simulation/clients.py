"""Ranking clients for the traffic simulator: the running service over HTTP, or in process.

- ``HttpRanking`` sends each simulated search to ``POST /rank`` of the BentoML service
  (loopback only, with a cap on requests and on wall time); the service writes the
  prediction log itself, with its own online features.
- ``InProcessRanking`` is the same request path without the server, for tests and
  benchmarks: the day's feature snapshot, the model's scores, and a prediction-log row per
  request written by serving's own ``PredictionLog``, so the reports read one format.

``SnapshotFeatures`` gives the in-process path its features: the feature service's columns
looked up in one day's snapshot tables (what the online store holds after that day's
materialization), with the request-time features computed by the Feast on-demand view's own
transformation and the gaps filled by ``features.store.fill_defaults``, the function training
and serving use. ``tests/integration/test_monitoring.py`` checks it against Feast's
point-in-time join.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pandas as pd
from feast import FeatureStore

from features import aggregates
from features.feature_repo.data_sources import feature_sources
from features.feature_repo.feature_services import ranker_v1
from features.feature_repo.feature_views import feature_views
from features.feature_repo.on_demand import ranking_context_view, ranking_request
from features.store import feature_names, fill_defaults
from models.scorers import Scorer
from monitoring.windows import SERVED_BY_MODEL
from ranklab import schema
from ranklab.settings import Settings
from serving.prediction_log import PredictionLog, PredictionRecord, read_predictions
from simulation.traffic import RankingRequest, ServedRanking

CATEGORY = "category"  # item_attributes' category: the key into the affinity view


# ---- features of one day's snapshot ----
@dataclass(frozen=True)
class CandidateFrame:
    """The model's input for a batch of requests: a row per candidate, request after request."""

    features: pd.DataFrame  # the feature service's columns, float64, defaults filled
    request_index: np.ndarray  # row -> position of its request in the batch
    cold_user: np.ndarray  # per request: the user has no stored features
    cold_item: np.ndarray  # per row: the item has no stored features


class SnapshotFeatures:
    """The ``ranker_v1`` feature service read from a day's snapshot tables, in pandas."""

    def __init__(self, settings: Settings) -> None:
        views = feature_views(feature_sources(settings))  # definitions only: nothing is read
        self.on_demand = ranking_context_view(
            views[aggregates.ITEM_ATTRIBUTES], views[aggregates.USER_STATS], ranking_request()
        )
        self.feature_columns: list[str] = feature_names(ranker_v1(views, self.on_demand))
        sources = self.on_demand.source_feature_view_projections.values()
        stored = [f.name for projection in sources for f in projection.features]
        request = [f.name for r in self.on_demand.source_request_sources.values() for f in r.schema]
        self._on_demand_inputs = [*stored, *request]
        self._tables: dict[str, pd.DataFrame] = {}

    def load(self, feature_tables: Mapping[str, pd.DataFrame]) -> None:
        """Index the day's tables by their keys (the latest row of each key wins)."""
        missing = [t for t in aggregates.FEATURE_TABLES if t not in feature_tables]
        if missing:
            raise ValueError(f"feature snapshot lacks tables {missing}")
        keys = {
            aggregates.ITEM_STATS: [schema.ITEM_ID],
            aggregates.ITEM_ATTRIBUTES: [schema.ITEM_ID],
            aggregates.USER_STATS: [schema.USER_ID],
            aggregates.USER_CATEGORY_AFFINITY: [schema.USER_ID, schema.ITEM_CATEGORY],
        }
        self._tables = {
            name: feature_tables[name]
            .sort_values(schema.EVENT_TIMESTAMP, kind="stable")
            .drop_duplicates(key, keep="last")
            .drop(columns=[schema.EVENT_TIMESTAMP])
            .set_index(key)
            for name, key in keys.items()
        }

    def lookup(self, requests: Sequence[RankingRequest]) -> CandidateFrame:
        if not self._tables:
            raise RuntimeError("SnapshotFeatures.lookup before load: no snapshot for the day")
        sizes = np.array([len(r.candidates) for r in requests])
        request_index = np.repeat(np.arange(len(requests)), sizes)
        rows = pd.DataFrame(
            {
                schema.USER_ID: np.repeat([r.user_id for r in requests], sizes),
                schema.ITEM_ID: np.concatenate([r.candidates for r in requests]),
                schema.QUERY_CATEGORY: np.repeat([r.query_category for r in requests], sizes),
            }
        )
        # Stored values with NaN where a row is absent: what Feast hands on-demand views.
        items = self._tables[aggregates.ITEM_STATS].join(self._tables[aggregates.ITEM_ATTRIBUTES])
        raw = rows.join(items, on=schema.ITEM_ID).join(
            self._tables[aggregates.USER_STATS], on=schema.USER_ID
        )
        raw = raw.join(
            self._tables[aggregates.USER_CATEGORY_AFFINITY],
            on=[schema.USER_ID, CATEGORY],
        )
        on_demand = self.on_demand.feature_transformation.transform(raw[self._on_demand_inputs])
        frame = fill_defaults(pd.concat([raw, on_demand], axis=1))[self.feature_columns]
        user_columns = list(self._tables[aggregates.USER_STATS].columns)
        return CandidateFrame(
            features=frame.astype("float64"),
            request_index=request_index,
            cold_user=_first_per_request(raw[user_columns].isna().all(axis=1), request_index),
            cold_item=raw[CATEGORY].isna().to_numpy(),
        )


def _first_per_request(values: pd.Series, request_index: np.ndarray) -> np.ndarray:
    """One value per request from a per-row series that is constant within a request."""
    starts = np.flatnonzero(np.r_[True, np.diff(request_index) != 0])
    return values.to_numpy()[starts]


# ---- in process ----
class InProcessRanking:
    """The service's request path without HTTP: snapshot features, model scores, and a
    prediction-log row per request (timestamped with the simulated time, so the log's date
    partitions are the simulated days)."""

    def __init__(
        self,
        model: Scorer,
        model_version: str,
        log_root: Path,
        settings: Settings,
        model_name: str = "ranker",
    ) -> None:
        self.model = model
        self.model_name = model_name
        self.model_version = model_version
        self.features = SnapshotFeatures(settings)
        self.log = PredictionLog(Path(log_root)).start()

    def start_day(self, day: pd.Timestamp, feature_tables: Mapping[str, pd.DataFrame]) -> None:
        self.features.load(feature_tables)

    def rank(self, requests: Sequence[RankingRequest]) -> list[ServedRanking]:
        started = time.perf_counter()
        batch = self.features.lookup(requests)
        # One predict call for the whole batch, each request its own session.
        session_ids = np.array([r.session_id for r in requests])[batch.request_index]
        model_input = batch.features.assign(**{schema.SESSION_ID: session_ids})
        scores = np.asarray(self.model.predict(model_input), dtype=float)
        if scores.shape != (len(batch.features),) or not np.isfinite(scores).all():
            raise ValueError(
                f"{self.model_name} v{self.model_version} returned {scores.shape} scores with "
                f"non-finite values for {len(batch.features)} rows"
            )
        latency_ms = (time.perf_counter() - started) * 1e3 / max(len(requests), 1)
        bounds = np.flatnonzero(np.diff(batch.request_index)) + 1
        answers = []
        for i, (request, slate_scores, slate_features, cold_items) in enumerate(
            zip(
                requests,
                np.split(scores, bounds),
                np.split(batch.features.to_numpy(), bounds),
                np.split(batch.cold_item, bounds),
                strict=True,
            )
        ):
            request_id = f"sim-{request.session_id}"
            self.log.append(
                logged_request(
                    request,
                    request_id,
                    scores=slate_scores,
                    k=len(request.candidates),
                    model_name=self.model_name,
                    model_version=self.model_version,
                    served_by=SERVED_BY_MODEL,
                    latency_ms=latency_ms,
                    cold_user=bool(batch.cold_user[i]),
                    cold_items=request.candidates[cold_items].tolist(),
                    feature_names=tuple(self.features.feature_columns),
                    features=slate_features,
                )
            )
            # Best first; ties keep the candidates' order, as serving's top_k does.
            order = request.candidates[np.argsort(-slate_scores, kind="stable")]
            answers.append(ServedRanking(request_id, order, SERVED_BY_MODEL, self.model_version))
        return answers

    def close(self) -> None:
        self.log.close()


# ---- over HTTP ----
class TrafficBudgetExceeded(RuntimeError):
    """The simulation would send more requests, or run longer, than it was allowed."""


def require_loopback(base_url: str) -> str:
    """``base_url`` if its host is this machine; simulated traffic never leaves it."""
    host = urlsplit(base_url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost
        loopback = False
    if not loopback:
        raise ValueError(
            f"simulated traffic goes to loopback only (127.0.0.1, ::1, localhost); got {base_url!r}"
        )
    return base_url.rstrip("/")


class HttpRanking:
    """Sends each request to ``POST {base_url}/rank`` of the running service.

    Bounded: at most ``max_requests`` requests and ``max_seconds`` of wall time per client;
    a batch that would pass either limit is refused before anything of it is sent.
    ``on_day_start(day, feature_tables)`` is the caller's daily feature refresh (write the
    snapshot and materialize it into the service's online store); without it the service
    keeps serving the features it has. With ``log_root``, ``close`` waits (up to
    ``log_wait_s``) until the service's prediction log holds every request sent.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:3000",
        *,
        max_requests: int = 20_000,
        max_seconds: float = 600.0,
        timeout_s: float = 5.0,
        api_key: str | None = None,
        on_day_start: Callable[[pd.Timestamp, Mapping[str, pd.DataFrame]], None] | None = None,
        log_root: Path | None = None,
        log_wait_s: float = 30.0,
    ) -> None:
        if max_requests < 1 or max_seconds <= 0:
            raise ValueError(
                f"HttpRanking: max_requests must be >= 1 and max_seconds > 0, "
                f"got {max_requests} and {max_seconds}"
            )
        self.base_url = require_loopback(base_url)
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.on_day_start = on_day_start
        self.log_root = log_root
        self.log_wait_s = log_wait_s
        headers = {"x-api-key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)
        self._started = time.monotonic()
        self.sent: list[str] = []

    def start_day(self, day: pd.Timestamp, feature_tables: Mapping[str, pd.DataFrame]) -> None:
        if self.on_day_start is not None:
            self.on_day_start(day, feature_tables)

    def rank(self, requests: Sequence[RankingRequest]) -> list[ServedRanking]:
        if len(self.sent) + len(requests) > self.max_requests:
            raise TrafficBudgetExceeded(
                f"{len(self.sent)} requests sent, {len(requests)} more would pass the cap of "
                f"{self.max_requests}; simulate fewer days or raise max_requests"
            )
        return [self._rank_one(request) for request in requests]

    def _rank_one(self, request: RankingRequest) -> ServedRanking:
        elapsed = time.monotonic() - self._started
        if elapsed > self.max_seconds:
            raise TrafficBudgetExceeded(
                f"simulated traffic ran {elapsed:.0f} s, past its {self.max_seconds:.0f} s budget, "
                f"after {len(self.sent)} requests"
            )
        response = self._http.post(
            "/rank",
            json={
                "user_id": request.user_id,
                "context": {
                    "device": request.device,
                    "region": request.region,
                    "query_category": request.query_category,
                },
                "candidates": request.candidates.tolist(),
            },
        )
        response.raise_for_status()
        body = response.json()
        self.sent.append(body["request_id"])
        items = body["items"]
        order = np.array([item["item_id"] for item in items], dtype=np.int64)
        randomized = int(body.get("randomized_top_k", 0))
        # The model's own order is the order of its scores; the shown one may be shuffled.
        by_score = sorted(items, key=lambda item: -item["score"])
        return ServedRanking(
            request_id=body["request_id"],
            order=order,
            served_by=body["served_by"],
            model_version=str(body["model_version"]),
            randomized_top_k=randomized,
            policy_order=(
                np.array([item["item_id"] for item in by_score], dtype=np.int64)
                if randomized
                else None
            ),
        )

    def close(self) -> None:
        self._http.close()
        if self.log_root is not None and self.sent:
            wait_for_log(self.log_root, self.sent, self.log_wait_s)


def online_store_refresh(
    store: FeatureStore,
) -> Callable[[pd.DataFrame, Mapping[str, pd.DataFrame]], None]:
    """An ``on_day_start`` for ``HttpRanking``: write each day's snapshot straight into the
    service's online store (``write_to_online_store``), leaving the offline feature tables,
    which training reads, untouched. The service sees new item rows within its item-cache
    TTL (``RANKLAB_SERVING__ITEM_CACHE_TTL_SECONDS``; set it to 0 for a simulation)."""

    def refresh(day: pd.Timestamp, feature_tables: Mapping[str, pd.DataFrame]) -> None:
        for name in aggregates.FEATURE_TABLES:
            store.write_to_online_store(name, feature_tables[name])

    return refresh


def wait_for_log(log_root: Path, request_ids: Sequence[str], timeout_s: float) -> None:
    """Block until every request id is in the prediction log (the service writes it from a
    background thread every couple of seconds); raise after ``timeout_s``."""
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        logged = set(read_predictions(log_root)["request_id"])
        missing = wanted - logged
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(missing)} of {len(wanted)} requests not in the prediction log at "
                f"{log_root} after {timeout_s:.0f} s"
            )
        time.sleep(0.5)


def logged_request(request: RankingRequest, request_id: str, **served: object) -> PredictionRecord:
    """The prediction-log row of ``request`` as the service would write it: the request's
    own fields, plus ``served`` (scores, model, latency, ...) from whoever answered it."""
    return PredictionRecord(
        request_id=request_id,
        timestamp=request.ts.to_pydatetime(),
        user_id=request.user_id,
        device=request.device,
        region=request.region,
        query_category=request.query_category,
        candidates=request.candidates,
        **served,
    )
