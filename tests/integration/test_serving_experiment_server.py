"""An A/B experiment in a real ``bentoml serve`` process, started and stopped by the CLI.

The server runs over a copy of the trained state (so the ``challenger`` alias and the extra
model version registered here stay out of the other modules' registry). The tests run in
file order: a bad ``experiment start`` is refused; v1 (champion) against v2 (challenger)
is started with no restart; users land in the arm the in-process hash predicts and are
scored by that arm's model; the prediction log and /metrics carry the arm; a failing
treatment model falls back and is still logged in its arm; stopping the experiment returns
everyone to the champion within the poll interval.
"""

# ruff: noqa: F811 - pytest fixtures imported from serving_fixtures are parameters here
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving_fixtures import (
    API_KEY,
    RunningServer,
    ServingState,
    rank_body,
    register_fault_model,
    serving_state,  # noqa: F401 - a fixture
    wait_for,
)

from models.registry import Registry
from ranklab.settings import Settings
from serving.experiment import assign_arm, experiment_path, load_experiment
from serving.prediction_log import read_predictions
from serving.runtime import model_cache_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLL_SECONDS = 1.0
EXPERIMENT = "ranker-v1-vs-v2"
USERS = range(1, 301)  # known users and new ones alike: assignment needs only the id


@pytest.fixture(scope="module")
def state(serving_state: ServingState, tmp_path_factory) -> Settings:
    target = tmp_path_factory.mktemp("experiment") / "state"
    leftovers = shutil.ignore_patterns("predictions", model_cache_dir(serving_state.settings).name)
    shutil.copytree(serving_state.settings.root, target, ignore=leftovers)
    settings = serving_state.settings.model_copy(update={"state_dir": target})
    Registry(settings).set_alias("challenger", serving_state.versions[1])
    return settings


@pytest.fixture(scope="module")
def server(state: Settings, tmp_path_factory) -> RunningServer:
    running = RunningServer(
        state.root,
        tmp_path_factory.mktemp("experiment-server") / "server.log",
        RANKLAB_SERVING__API_KEY=API_KEY,
        RANKLAB_SERVING__FEATURE_TIMEOUT_MS="1000",
        RANKLAB_SERVING__MODEL_TIMEOUT_MS="1000",
        RANKLAB_SERVING__LOG_FLUSH_SECONDS="0.5",
        RANKLAB_SERVING__CHAMPION_POLL_SECONDS=str(POLL_SECONDS),
    )
    try:
        yield running.wait_live()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> httpx.Client:
    with server.client() as client:
        yield client


def ranklab(state: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("ranklab")), "experiment", *args]
    env = {**os.environ, "RANKLAB_STATE_DIR": str(state.root)}
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def rank(client: httpx.Client, user: int, items: list[int]) -> dict:
    response = client.post("/rank", json=rank_body(user, items))
    assert response.status_code == 200, response.text
    return response.json()


def requests_by_arm(server: RunningServer) -> dict[tuple[str, str, str], float]:
    """``ranklab_experiment_requests_total`` from /metrics: (experiment, arm, served_by) -> n."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        (s.labels["experiment"], s.labels["arm"], s.labels["served_by"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ranklab_experiment_requests_total"
    }


def experiment_detail(server: RunningServer) -> dict:
    return httpx.get(f"{server.url}/readyz", timeout=5.0).json()["experiment"]


@pytest.fixture(scope="module")
def items(serving_state: ServingState) -> list[int]:
    return serving_state.known_items[:20]


def test_start_refuses_an_alias_that_points_nowhere_and_writes_nothing(state: Settings):
    result = ranklab(
        state, "start", "--name", "typo", "--arm", "a=alias:champion", "--arm", "b=alias:challengr"
    )
    assert result.returncode == 2
    assert "arm 'b': alias 'challengr' points at no version" in result.stderr
    result = ranklab(state, "start", "--name", "x", "--arm", "a=alias:champion", "--arm", "b=v2")
    assert result.returncode == 2 and "'alias:<name>' or 'version:<number>'" in result.stderr
    assert load_experiment(experiment_path(state.root)) is None


def test_without_an_experiment_responses_and_log_rows_have_no_arm(server, client, items):
    body = rank(client, 5, items)
    assert body["experiment"] is None and body["experiment_arm"] is None
    assert experiment_detail(server)["state"] == "none"


def test_started_experiment_serves_each_user_by_the_model_of_their_arm(
    serving_state: ServingState, state: Settings, server, client, items
):
    v1, v2 = serving_state.versions
    result = ranklab(
        state, "start", "--name", EXPERIMENT,
        "--arm", "control=alias:champion", "--arm", "treatment=alias:challenger",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"treatment: alias:challenger (now v{v2}), 50.0%" in result.stdout
    wait_for(lambda: experiment_detail(server)["state"] == "running", timeout=30)

    config = load_experiment(experiment_path(state.root))
    answers = {user: rank(client, user, items) for user in USERS}
    for user, body in answers.items():
        assert body["experiment"] == EXPERIMENT
        assert body["experiment_arm"] == assign_arm(user, config)  # the same hash in-process
        assert body["model_version"] == {"control": v1, "treatment": v2}[body["experiment_arm"]]
        assert body["served_by"] == "model"
    counts = Counter(body["experiment_arm"] for body in answers.values())
    n = len(USERS)
    assert abs(counts["treatment"] - n / 2) < 4.5 * math.sqrt(n / 4), counts

    # The same user, again and again: the same arm and the same model version.
    for user in (USERS[0], USERS[1], USERS[2]):
        bodies = [rank(client, user, items) for _ in range(5)]
        again = {(b["experiment_arm"], b["model_version"]) for b in bodies}
        expected = (answers[user]["experiment_arm"], answers[user]["model_version"])
        assert again == {expected}


def test_prediction_log_rows_and_metrics_carry_the_arm(state: Settings, server, client, items):
    bodies = [rank(client, user, items) for user in USERS[:40]]
    sent = {body["request_id"]: user for body, user in zip(bodies, USERS, strict=False)}
    config = load_experiment(experiment_path(state.root))

    def logged() -> bool:
        log = read_predictions(state.root / "predictions")
        return set(sent) <= set(log["request_id"])

    wait_for(logged, timeout=15)
    log = read_predictions(state.root / "predictions").set_index("request_id").loc[list(sent)]
    assert set(log["experiment"]) == {EXPERIMENT}
    assert log["experiment_arm"].tolist() == [assign_arm(u, config) for u in sent.values()]

    # The counter covers the whole module's requests: at least this test's, arm by arm.
    counted = requests_by_arm(server)
    sent_by_arm = Counter((EXPERIMENT, b["experiment_arm"], b["served_by"]) for b in bodies)
    for key, n in sent_by_arm.items():
        assert counted.get(key, 0) >= n, (key, n, counted)


def test_a_failing_treatment_model_falls_back_and_is_still_logged_in_its_arm(
    serving_state: ServingState, state: Settings, server, client, items, tmp_path
):
    own_state = dataclasses.replace(serving_state, settings=state)  # this module's registry
    fault_version = register_fault_model(own_state, tmp_path, stall_seconds=0.0)
    result = ranklab(
        state, "start", "--name", "faulty", "--weights", "1,1",
        "--arm", "control=alias:champion", "--arm", f"treatment=version:{fault_version}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    wait_for(lambda: (experiment_detail(server)["config"] or {}).get("name") == "faulty", 30)
    wait_for(lambda: experiment_detail(server)["state"] == "running", timeout=30)
    config = load_experiment(experiment_path(state.root))
    treated = [u for u in USERS if assign_arm(u, config) == "treatment"][:5]
    (tmp_path / "raise").touch()  # the treatment model now raises on every call

    bodies = [rank(client, user, items) for user in treated]
    assert {(b["experiment_arm"], b["served_by"]) for b in bodies} == {
        ("treatment", "fallback:model_error")
    }
    ids = [b["request_id"] for b in bodies]
    wait_for(
        lambda: set(ids) <= set(read_predictions(state.root / "predictions")["request_id"]), 15
    )
    log = read_predictions(state.root / "predictions").set_index("request_id").loc[ids]
    assert set(zip(log["experiment_arm"], log["served_by"], strict=True)) == {
        ("treatment", "fallback:model_error")
    }


def test_stopping_returns_everyone_to_the_champion_within_the_poll_interval(
    serving_state: ServingState, state: Settings, server, client, items
):
    v1 = serving_state.versions[0]
    assert rank(client, USERS[0], items)["experiment"] is not None
    result = ranklab(state, "stop")
    assert result.returncode == 0 and "stopped" in result.stdout
    stopped_at = time.monotonic()

    def everyone_on_the_champion() -> bool:
        bodies = [rank(client, user, items) for user in USERS[:20]]
        return all(b["experiment_arm"] is None and b["model_version"] == v1 for b in bodies)

    wait_for(everyone_on_the_champion, timeout=15, every=0.05)
    waited = time.monotonic() - stopped_at
    print(f"everyone back on the champion {waited:.2f} s after `experiment stop`")  # with -s
    # One poll interval, plus the time one poll round and one check of 20 requests take.
    assert waited < POLL_SECONDS + 2.0, waited
    assert experiment_detail(server)["state"] == "disabled"
