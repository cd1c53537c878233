"""The ``services`` profile: the same lifecycle run against PostgreSQL (MLflow's backend) and
Redis (Feast's online store), the servers on loopback on the development machines.

Each test run uses a database and a Feast project of its own, removed afterwards, so a
developer's own services-profile state is never touched. Skipped, saying why, where the
servers do not answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from serving_fixtures import reachable
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from features.store import feature_store
from models.registry import Registry, ensure_postgres_database
from ranklab.settings import REPO_ROOT, Settings, get_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = f"ranklab_test_{os.getpid()}"  # the database and the Feast project of this test run


def drop_database(uri: str) -> None:
    url = make_url(uri)
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="module")
def services_run(tmp_path_factory) -> Iterator[tuple[Settings, subprocess.CompletedProcess]]:
    """``ranklab run`` at a small scale with ``RANKLAB_PROFILE=services``."""
    base = get_settings(profile="services")
    uri = make_url(base.mlflow.postgres_uri).set(database=NAME).render_as_string(False)
    redis_host, redis_port = base.feast.redis_connection.rsplit(":", 1)
    postgres = make_url(uri)
    for host, port in ((postgres.host, postgres.port or 5432), (redis_host, int(redis_port))):
        if not reachable(host, port):
            pytest.skip(f"the services profile needs {host}:{port}, which does not answer")
    env = {
        **os.environ,
        "RANKLAB_PROFILE": "services",
        "RANKLAB_STATE_DIR": str(tmp_path_factory.mktemp("services") / "state"),
        "RANKLAB_MLFLOW__POSTGRES_URI": uri,
        "RANKLAB_FEAST__PROJECT": NAME,
    }
    command = [sys.executable, "-m", "cli.main", "run", "--scale", "0.1"]
    run = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    settings = get_settings(
        profile="services",
        state_dir=env["RANKLAB_STATE_DIR"],
        mlflow=base.mlflow.model_copy(update={"postgres_uri": uri}),
        feast=base.feast.model_copy(update={"project": NAME}),
    )
    try:
        yield settings, run
    finally:
        feature_store(settings).teardown()  # the project's keys in Redis
        drop_database(uri)


def test_the_lifecycle_runs_on_postgres_and_redis(services_run):
    settings, run = services_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    # Read back from PostgreSQL: the gate's decision on v1 is recorded whatever it was (on
    # 70 test searches the debiased metric may not prove v1 better than popularity).
    registry = Registry(settings)
    decision = registry.client.get_model_version(registry.model_name, "1").tags["gate.decision"]
    assert decision in {"champion", "challenger", "rejected"}
    champion = registry.champion_version()
    assert (champion is not None and str(champion.version) == "1") == (decision == "champion")
    assert ensure_postgres_database(settings.mlflow_tracking_uri) is False  # made by the run

    store = feature_store(settings)
    assert store.config.online_store.type == "redis"
    users = list(range(50))
    stored = store.get_online_features(
        features=["user_stats:user_sessions_28d"], entity_rows={"user_id": users}
    ).to_dict()["user_sessions_28d"]
    assert sum(value is not None for value in stored) > 0  # materialized into Redis


def test_an_unreachable_postgres_is_named_before_mlflow_retries():
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1 \(MLflow's backend"):
        ensure_postgres_database("postgresql+psycopg2://postgres@127.0.0.1:1/ranklab_mlflow")


def test_a_database_name_that_is_not_an_identifier_is_refused():
    with pytest.raises(ValueError, match="not a plain identifier"):
        ensure_postgres_database('postgresql+psycopg2://postgres@127.0.0.1/x"; DROP DATABASE y')
