"""The ranking service as a real ``bentoml serve`` process over a small trained state.

One server for the module (starting one costs ~10-25 s on 2 cores), with an API key set.
The tests run in file order: ranking, validation, then each fault injected into the running
server (online store unreadable, locked, a feature missing; the model raising, stalling),
then hot swap under load, rollback through the CLI, the fuzzer, and last a burst of
requests followed by a graceful stop, after which the prediction log is counted.

Budgets are 1 s here (100 ms in production) so a busy CI machine does not turn a normal
read into a fallback; the faults overrun them by design.
"""

# ruff: noqa: F811 - pytest fixtures imported from serving_fixtures are parameters here
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from serving_fixtures import (
    API_KEY,
    HEADERS,
    RunningServer,
    ServingState,
    feature_rows_deleted,
    online_store_locked,
    online_store_unreadable,
    rank_body,
    register_fault_model,
    served_version,
    serving_state,  # noqa: F401 - a fixture
    wait_for,
)

from features.store import feature_store, online_features
from models.pyfunc import score
from models.registry import Registry
from ranklab.schema import SESSION_ID
from serving.fallback import PopularityFallback
from serving.prediction_log import read_predictions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUDGET_MS = "1000"
STALL_SECONDS = 3.0  # the fault model's stall: three times the model budget
BURST = 240  # requests sent just before the graceful stop


@pytest.fixture(scope="module")
def server(serving_state: ServingState, tmp_path_factory) -> RunningServer:
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = RunningServer(
        serving_state.settings.root,
        log,
        RANKLAB_SERVING__API_KEY=API_KEY,
        RANKLAB_SERVING__FEATURE_TIMEOUT_MS=BUDGET_MS,
        RANKLAB_SERVING__MODEL_TIMEOUT_MS=BUDGET_MS,
        RANKLAB_SERVING__LOG_FLUSH_SECONDS="0.5",
    )
    try:
        yield running.wait_live()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> httpx.Client:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def trigger_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-faults")


def rank(client: httpx.Client, body: dict) -> dict:
    response = client.post("/rank", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def candidates(state: ServingState, n: int = 30) -> list[int]:
    return state.known_items[:n]


def popularity_order(state: ServingState, items: list[int]) -> list[int]:
    scores = PopularityFallback.for_settings(state.settings).load().score(items)
    return [items[i] for i in np.argsort(-scores, kind="stable")]


# ---- ranking ----
def test_ranks_with_the_champion_exactly_as_the_registered_model_scores_offline(
    serving_state: ServingState, client: httpx.Client
):
    user, items = serving_state.known_users[5], candidates(serving_state)
    body = rank(client, rank_body(user, items, k=10, query_category="home"))

    # The same request in-process: Feast's own online path, the registered v1 pyfunc.
    frame = online_features(feature_store(serving_state.settings), user, items, "home")
    model = Registry(serving_state.settings).load(serving_state.versions[0])
    expected = score(model, frame.assign(**{SESSION_ID: 0}))
    best = np.argsort(-expected, kind="stable")[:10]

    assert body["served_by"] == "model"
    assert (body["model_name"], body["model_version"]) == ("ranker", serving_state.versions[0])
    assert [item["item_id"] for item in body["items"]] == [items[i] for i in best]
    np.testing.assert_allclose([item["score"] for item in body["items"]], expected[best], rtol=1e-5)
    assert body["cold_start"] == {"user": False, "items": []}
    assert len(body["request_id"]) == 32


def test_unknown_user_and_items_are_served_with_defaults_and_flagged(
    serving_state: ServingState, client: httpx.Client
):
    new_items = [10**6, 10**6 + 1]
    body = rank(client, rank_body(10**9, candidates(serving_state, 5) + new_items))

    assert body["served_by"] == "model"
    assert body["cold_start"] == {"user": True, "items": new_items}
    assert len(body["items"]) == 7


def test_k_larger_than_the_candidates_returns_them_all(serving_state, client):
    body = rank(client, rank_body(serving_state.known_users[0], candidates(serving_state, 3), k=50))
    assert len(body["items"]) == 3


# ---- invalid input: a 4xx naming what is wrong ----
def _with(**changes) -> dict:
    body = rank_body(1, [1, 2, 3])
    for key, value in changes.items():
        if key.startswith("context_"):
            body["context"][key.removeprefix("context_")] = value
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (_with(user_id="7"), "user_id", "valid integer"),
        (_with(user_id=-1), "user_id", "greater than or equal to 0"),
        (_with(candidates=[]), "candidates", "at least 1 item"),
        (_with(candidates=list(range(1001))), "candidates", "at most 1000 items"),
        (_with(candidates=[4, 4, 5]), "candidates", "repeated item ids: \\[4\\]"),
        (_with(candidates=[1.0, 2]), "candidates", "valid integer"),
        (_with(k=0), "k", "greater than or equal to 1"),
        (_with(context_device="fridge"), "device", "'mobile', 'desktop' or 'tablet'"),
        (_with(context_colour="red"), "colour", "Extra inputs are not permitted"),
        (_with(surprise=1), "surprise", "Extra inputs are not permitted"),
    ],
)
def test_invalid_request_gets_a_400_naming_the_field(client, body, field, message):
    response = client.post("/rank", json=body)

    assert response.status_code == 400
    errors = response.json()["detail"]
    assert any(field in map(str, error["loc"]) for error in errors), errors
    assert any(re.search(message, error["msg"]) for error in errors), errors


def test_nan_where_a_number_is_expected_is_a_400(client):
    raw = '{"user_id": NaN, "context": {"device": "mobile", "region": "north", '
    raw += '"query_category": "books"}, "candidates": [1]}'
    response = client.post("/rank", content=raw, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["user_id"]


def test_body_over_the_size_limit_is_a_413(client):
    body = _with(padding="x" * 70_000)
    response = client.post("/rank", json=body)
    assert response.status_code == 413
    assert "larger than 65536 bytes" in response.json()["error"]


def test_non_json_body_is_a_415(client):
    response = client.post("/rank", content=b"user_id=1", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_missing_or_wrong_api_key_is_a_401_but_probes_stay_open(server: RunningServer):
    no_key = httpx.post(f"{server.url}/rank", json=_with(), timeout=10)
    wrong_key = httpx.post(
        f"{server.url}/rank", json=_with(), headers={"x-api-key": "nope"}, timeout=10
    )

    assert (no_key.status_code, wrong_key.status_code) == (401, 401)
    assert "x-api-key" in no_key.json()["error"]
    assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200


# ---- operations ----
def test_readyz_names_the_model_its_source_and_the_store_state(serving_state, server):
    response = httpx.get(f"{server.url}/readyz", timeout=10)
    detail = response.json()

    assert response.status_code == 200
    assert detail["ready"] is True and detail["status"] == "ok"
    assert detail["model"]["version"] == serving_state.versions[0]
    assert detail["model"]["source"] == "registry"
    assert detail["features"]["usable"] is True
    assert detail["fallback"]["items"] == len(serving_state.known_items)


# ---- the fallback chain, one fault at a time ----
def test_unreadable_online_store_falls_back_to_popularity_and_readyz_says_so(
    serving_state, client, server
):
    items = candidates(serving_state, 20)
    with online_store_unreadable(serving_state.settings):
        body = rank(client, rank_body(serving_state.known_users[1], items))
        readyz = httpx.get(f"{server.url}/readyz", timeout=10)

    assert body["served_by"] == "fallback:online_store_unavailable"
    assert body["model_name"] == "popularity"
    assert [item["item_id"] for item in body["items"]] == popularity_order(serving_state, items)
    assert body["cold_start"] is None  # the store was not read: nothing is known
    assert readyz.status_code == 503
    assert readyz.json()["features"]["usable"] is False
    wait_for(lambda: rank(client, rank_body(1, items))["served_by"] == "model", timeout=10)


def test_locked_online_store_falls_back_once_the_budget_is_spent(serving_state, client):
    items = candidates(serving_state, 20)
    with online_store_locked(serving_state.settings):
        started = time.monotonic()
        body = rank(client, rank_body(serving_state.known_users[2], items))
        waited = time.monotonic() - started

    assert body["served_by"] == "fallback:online_store_timeout"
    assert [item["item_id"] for item in body["items"]] == popularity_order(serving_state, items)
    assert 1.0 <= waited < 4.0  # the 1 s budget, not SQLite's 5 s busy timeout
    wait_for(lambda: rank(client, rank_body(1, items))["served_by"] == "model", timeout=10)


def test_missing_feature_for_a_known_user_falls_back(serving_state, client):
    user, items = serving_state.known_users[3], candidates(serving_state, 10)
    with feature_rows_deleted(serving_state.settings, "user_stats", "user_ctr_28d"):
        during = rank(client, rank_body(user, items))
    after = rank(client, rank_body(user, items))

    assert during["served_by"] == "fallback:feature_missing"
    assert after["served_by"] == "model"


def test_model_that_raises_or_stalls_is_answered_by_the_fallback(
    serving_state, client, server, trigger_dir
):
    registry = Registry(serving_state.settings)
    faulty = register_fault_model(serving_state, trigger_dir, STALL_SECONDS)
    registry.promote_champion(faulty, {"gate.decision": "serving test: fault model"})
    wait_for(lambda: served_version(server) == faulty, timeout=15)
    items = candidates(serving_state, 10)

    (trigger_dir / "raise").touch()
    raised = rank(client, rank_body(1, items))
    (trigger_dir / "raise").unlink()
    (trigger_dir / "slow").touch()
    started = time.monotonic()
    stalled = rank(client, rank_body(1, items))
    waited = time.monotonic() - started
    (trigger_dir / "slow").unlink()
    registry.rollback("serving test: fault model done")
    wait_for(lambda: served_version(server) == serving_state.versions[0], timeout=15)

    assert raised["served_by"] == "fallback:model_error"
    assert [item["item_id"] for item in raised["items"]] == popularity_order(serving_state, items)
    assert raised["cold_start"] == {"user": False, "items": []}  # features were read
    assert stalled["served_by"] == "fallback:model_timeout"
    assert 1.0 <= waited < STALL_SECONDS


def test_metrics_count_requests_fallbacks_by_reason_and_the_served_version(serving_state, server):
    text = httpx.get(f"{server.url}/metrics", timeout=10).text

    for reason in ("online_store_unavailable", "online_store_timeout", "feature_missing",
                   "model_error", "model_timeout"):  # fmt: skip
        assert f'ranklab_rank_fallbacks_total{{reason="{reason}"}}' in text
    assert 'ranklab_rank_requests_total{served_by="model"}' in text
    assert "ranklab_rank_latency_seconds_bucket" in text
    served = f'model_name="ranker",source="registry",version="{serving_state.versions[0]}"'
    assert f"ranklab_served_model_info{{{served}}} 1.0" in text


# ---- hot swap and rollback ----
def test_hot_swap_under_load_fails_no_request(serving_state, server):
    registry, new = Registry(serving_state.settings), serving_state.versions[1]
    seen: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def fire() -> None:
        with server.client() as own:
            while not stop.is_set():
                response = own.post("/rank", json=rank_body(2, candidates(serving_state, 20)))
                body = response.json() if response.status_code == 200 else {}
                seen.append(
                    (response.status_code, body.get("served_by"), body.get("model_version"))
                )

    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            pool.submit(fire)
        time.sleep(1.0)
        registry.promote_champion(new, {"gate.decision": "serving test: hot swap"})
        wait_for(lambda: any(version == new for _, _, version in seen[-5:]), timeout=15)
        time.sleep(0.5)
        stop.set()

    assert {status for status, _, _ in seen} == {200}
    # No request fails. While the new version is downloaded, verified against its digest and
    # loaded, a few requests may overrun the model budget and be answered by popularity,
    # saying so (seen in the full suite on 2 cores, not when this file runs alone): the
    # fallback chain working, a tail cost the next serving work should remove (issue 15).
    served_by = [served for _, served, _ in seen]
    assert set(served_by) <= {"model", "fallback:model_timeout"}
    assert served_by.count("fallback:model_timeout") <= 0.25 * len(served_by)
    versions = [version for _, _, version in seen]
    assert {serving_state.versions[0], new} <= set(versions)
    assert len(seen) > 20


def test_cli_rollback_is_served_within_10_seconds(serving_state, server):
    previous = serving_state.versions[0]
    assert served_version(server) == serving_state.versions[1]
    ranklab = Path(sys.executable).with_name("ranklab")
    env = {**os.environ, "RANKLAB_STATE_DIR": str(serving_state.settings.root)}
    subprocess.run([ranklab, "rollback", "--reason", "serving test"], env=env, check=True)

    # From the moment the alias moved (the command's own start-up is not the service's).
    waited = wait_for(lambda: served_version(server) == previous, timeout=15)
    assert waited < 10.0


# ---- property-based: any request the schema allows, and many it does not, but no 5xx ----
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_fuzzed_requests_from_the_openapi_schema_never_get_a_5xx(server: RunningServer, mode):
    """Schemathesis draws requests from the served OpenAPI schema: valid ones (``positive``)
    and ones that break it (``negative``: wrong types, missing or extra fields...)."""
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json", headers=HEADERS)
    statuses: list[int] = []

    @given(case=schema["/rank"]["POST"].as_strategy(generation_mode=mode))
    @settings(max_examples=80, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def no_server_error(case) -> None:
        response = case.call(base_url=server.url, headers=HEADERS)
        statuses.append(response.status_code)
        assert response.status_code < 500, response.text

    no_server_error()
    expected = 200 if mode is GenerationMode.POSITIVE else 400
    assert statuses.count(expected) > len(statuses) // 2, statuses


# ---- last: load, graceful stop, then count the log ----
def test_prediction_log_keeps_every_row_through_load_and_graceful_shutdown(
    serving_state, server: RunningServer
):
    def send_many(user: int) -> list[str]:
        with server.client() as own:
            return [
                rank(own, rank_body(user, candidates(serving_state, 100)[i % 7 :]))["request_id"]
                for i in range(BURST // 8)
            ]

    with ThreadPoolExecutor(8) as pool:
        request_ids = [
            rid for ids in pool.map(send_many, serving_state.known_users[:8]) for rid in ids
        ]
    assert server.stop() == 0  # SIGTERM at once: the shutdown hook writes what is still queued

    log = read_predictions(serving_state.settings.root / "predictions")
    burst = log[log["request_id"].isin(request_ids)]
    assert len(burst) == len(set(request_ids)) == BURST
    assert log["request_id"].is_unique
    row = burst.iloc[0]
    assert row["served_by"] == "model"
    assert np.vstack(row["features"]).shape == (len(row["candidates"]), len(row["feature_names"]))
    assert isinstance(log["timestamp"].dtype, pd.DatetimeTZDtype)
