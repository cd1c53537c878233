"""The service's Prometheus metrics (served at ``/metrics`` beside BentoML's own).

- ``ranklab_rank_requests_total{served_by}``: answered ranking requests, by how.
- ``ranklab_rank_fallbacks_total{reason}``: requests the champion could not answer.
- ``ranklab_rank_latency_seconds{served_by}``: time inside the handler (histogram).
- ``ranklab_cold_start_total{entity}``: unknown users and items served with defaults.
- ``ranklab_served_model_info{model_name,version,source}``: 1 for the model in use.
- ``ranklab_model_loads_total{outcome}``: champion versions ``loaded``, ``refused`` (does
  not load or score), ``digest_refused`` (its bytes are not the ones the gate approved, or
  no digest was recorded), or ``download_failed`` (tried again at the next poll).
- ``ranklab_prediction_log_rows_written_total`` (compacted into Parquet),
  ``ranklab_prediction_log_pending`` (in the write-ahead files) and
  ``ranklab_prediction_log_lost_total`` (answered, but the row could not be written).
- ``ranklab_experiment_requests_total{experiment,arm,served_by}``: requests by A/B arm.
- ``ranklab_ready`` (the last ``/readyz`` of each worker) and ``ranklab_serving_degraded``.

The alert rules and the dashboard over these: ``ops/prometheus/``, ``ops/grafana/``.

``prometheus_client`` is imported when ``ServingMetrics`` is built, not when this module is
imported: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in each worker after importing the
service module, and the client picks its storage (per-process files that ``/metrics``
aggregates across workers) at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from serving.champion import LoadedModel

# From 1 ms to 1 s: the fallback path answers in ~1 ms, the target p99 at c=8 is 50 ms.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)


class ServingMetrics:
    """Every metric the ranking service records, registered on ``registry`` (default: global)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = REGISTRY if registry is None else registry
        self.requests = Counter(
            "ranklab_rank_requests",
            "Ranking requests answered, by how they were served.",
            ["served_by"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "ranklab_rank_fallbacks",
            "Ranking requests the champion could not answer, by reason.",
            ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "ranklab_rank_latency_seconds",
            "Time spent answering a ranking request inside the service.",
            ["served_by"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.cold_start = Counter(
            "ranklab_cold_start",
            "Users and items unknown to the feature store, served with default features.",
            ["entity"],
            registry=registry,
        )
        self.served_model = Gauge(
            "ranklab_served_model_info",
            "1 for the model version in use (source: registry, disk_cache or none).",
            ["model_name", "version", "source"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.model_loads = Counter(
            "ranklab_model_loads",
            "Champion versions loaded (at start-up and on each alias move), refused, or whose "
            "download failed (tried again at the next poll).",
            ["outcome"],
            registry=registry,
        )
        self.log_rows_written = Counter(
            "ranklab_prediction_log_rows_written",
            "Prediction-log rows written to disk.",
            registry=registry,
        )
        self.log_rows_lost = Counter(
            "ranklab_prediction_log_lost",
            "Requests answered whose prediction-log row could not be written (a full disk).",
            registry=registry,
        )
        self.log_pending = Gauge(
            "ranklab_prediction_log_pending",
            "Prediction-log rows in the write-ahead files, not yet compacted into Parquet.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.ready = Gauge(
            "ranklab_ready",
            "1 when the worker's last /readyz found it ready (online store answers, something "
            "can rank), else 0.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.degraded = Gauge(
            "ranklab_serving_degraded",
            "1 when the worker serves degraded: no champion loaded, registry unreachable, or a "
            "version refused.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.experiment_requests = Counter(
            "ranklab_experiment_requests",
            "Ranking requests in a running A/B experiment, by arm and how they were served.",
            ["experiment", "arm", "served_by"],
            registry=registry,
        )
        self._served: tuple[str, str, str] | None = None

    def observe_request(self, served_by: str, reason: str | None, seconds: float) -> None:
        self.requests.labels(served_by=served_by).inc()
        self.latency.labels(served_by=served_by).observe(seconds)
        if reason is not None:
            self.fallbacks.labels(reason=reason).inc()

    def observe_exposure(self, experiment: str, arm: str, served_by: str) -> None:
        self.experiment_requests.labels(experiment=experiment, arm=arm, served_by=served_by).inc()

    def observe_cold_start(self, cold_user: bool, cold_items: int) -> None:
        if cold_user:
            self.cold_start.labels(entity="user").inc()
        if cold_items:
            self.cold_start.labels(entity="item").inc(cold_items)

    def model_loaded(self, model: LoadedModel) -> None:
        self.model_loads.labels(outcome="loaded").inc()
        self.set_served_model(model.name, model.version, model.source)

    def model_refused(self, version: str, error: Exception) -> None:  # noqa: ARG002 - a hook
        from serving.champion import ArtifactDigestError

        tampered = isinstance(error, ArtifactDigestError)
        self.model_loads.labels(outcome="digest_refused" if tampered else "refused").inc()

    def model_download_failed(self, version: str, error: Exception) -> None:  # noqa: ARG002
        self.model_loads.labels(outcome="download_failed").inc()

    def set_served_model(self, model_name: str, version: str, source: str) -> None:
        """Point the info gauge at the model now in use (the previous one drops to 0)."""
        if self._served is not None:
            self.served_model.labels(*self._served).set(0)
        self._served = (model_name, version, source)
        self.served_model.labels(*self._served).set(1)
