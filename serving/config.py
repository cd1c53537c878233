"""The serving knobs: limits, time budgets, cache staleness, the optional API key.

Read from environment variables prefixed ``RANKLAB_SERVING__`` (e.g.
``RANKLAB_SERVING__MODEL_TIMEOUT_MS=80``), like the ``ranklab.settings`` sections, so the
lead can fold this class into ``Settings`` as a ``serving`` section without renaming a
variable. Building it has no side effects.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The request contract (DESIGN.md): 1..1000 candidates. It is also written into the OpenAPI
# schema, which is built when the service class is defined, so it is a constant, not a knob.
MAX_CANDIDATES = 1000
API_KEY_HEADER = "x-api-key"


class ServingSettings(BaseSettings):
    """How the ranking service behaves; every time budget is per request."""

    model_config = SettingsConfigDict(env_prefix="RANKLAB_SERVING__", extra="ignore", frozen=True)

    api_key: SecretStr | None = Field(
        None,
        description=f"When set, every request but the probes and /metrics must send it in the "
        f"{API_KEY_HEADER!r} header (401 otherwise).",
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
        2.0, gt=0, description="How often the prediction log writes its buffered rows."
    )
    log_flush_rows: int = Field(
        5_000, gt=0, description="Rows that trigger a prediction-log write before the interval."
    )


def get_serving_settings(**overrides: object) -> ServingSettings:
    """Serving settings from the environment, with keyword overrides (tests)."""
    return ServingSettings(**overrides)
