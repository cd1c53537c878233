"""Simulated traffic through the real ranking service (``bentoml serve``): the HTTP path.

The simulator refreshes the service's online store each day (``online_store_refresh``),
sends every search to ``POST /rank`` and reads the service's own prediction log back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from serving_fixtures import API_KEY, TINY_DATA, RunningServer, build_serving_state

from features import aggregates
from features.store import feature_store
from monitoring.windows import candidate_rows
from ranklab import schema
from serving.prediction_log import read_predictions
from simulation.clients import HttpRanking, SnapshotFeatures, online_store_refresh
from simulation.generator import generate_marketplace
from simulation.traffic import RankingRequest, TrafficPlan, simulate_traffic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    # Its own state: the simulation writes new days into the online store.
    state = build_serving_state(tmp_path_factory.mktemp("monitoring-http") / "state")
    server = RunningServer(
        state.settings.root,
        state.settings.root / "server.log",
        RANKLAB_SERVING__API_KEY=API_KEY,
        RANKLAB_SERVING__ITEM_CACHE_TTL_SECONDS="0",  # each day's item rows, at once
        RANKLAB_SERVING__LOG_FLUSH_SECONDS="0.5",
        RANKLAB_SERVING__FEATURE_TIMEOUT_MS="2000",
        RANKLAB_SERVING__MODEL_TIMEOUT_MS="2000",
    )
    try:
        yield state, server.wait_live()
    finally:
        server.stop()


def test_a_simulated_day_is_served_logged_and_read_back_over_http(served):
    state, server = served
    settings = state.settings
    tables = generate_marketplace(TINY_DATA)  # the world the serving state was built from
    log_root = settings.root / "predictions"
    client = HttpRanking(
        server.url,
        api_key=API_KEY,
        max_requests=100,
        max_seconds=120,
        on_day_start=online_store_refresh(feature_store(settings)),
        log_root=log_root,
    )
    traffic = simulate_traffic(tables, TINY_DATA, TrafficPlan(days=1, seed=0), client)

    logged = read_predictions(log_root)
    logged = logged[logged["request_id"].isin(traffic.requests["request_id"])]
    assert len(logged) == len(traffic.requests) >= 5
    assert (logged["served_by"] == "model").all()
    assert (logged["model_version"] == state.versions[0]).all()

    # The ledger puts the wall-clock log rows back on the simulated day.
    rows = candidate_rows(logged, traffic.requests)
    assert rows["ts"].between(traffic.start, traffic.end, inclusive="left").all()
    # Clicks follow the order the service returned: position 1 is its best score.
    shown = traffic.impressions.merge(rows, on=["request_id", "item_id"], suffixes=("", "_log"))
    assert len(shown) == len(rows) and (shown["position"] == shown["position_log"]).all()

    # The service scored the day's snapshot: the features it logged are the ones the
    # in-process path computes for the same requests.
    features = SnapshotFeatures(settings)
    features.load(aggregates.compute_feature_tables(tables, pd.DatetimeIndex([traffic.start])))
    # The log holds pseudonyms; the simulated world's ledger knows each request's user.
    user_of = traffic.requests.set_index("request_id")[schema.USER_ID]
    requests = [
        RankingRequest(
            session_id=0,
            ts=traffic.start,
            user_id=int(user_of[r.request_id]),
            device=r.device,
            region=r.region,
            query_category=r.query_category,
            candidates=np.asarray(r.candidates),
        )
        for r in logged.itertuples(index=False)
    ]
    expected = features.lookup(requests).features
    np.testing.assert_allclose(
        rows[features.feature_columns].to_numpy(), expected.to_numpy(), rtol=1e-9
    )
    assert set(traffic.requests[schema.DEVICE]) <= {"mobile", "desktop", "tablet"}
