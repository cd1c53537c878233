"""Starting the ranking server: the one command line and environment every caller uses.

``make serve``, ``python -m serving``, the integration tests and the benchmark all start
``bentoml serve serving.service:RankingService`` through ``server_command`` and
``server_env``, so the environment fixes found by measurement apply everywhere:

- ``OMP_NUM_THREADS=1`` / ``MKL_NUM_THREADS=1``: torch in each worker would otherwise start
  a thread per core, and on 2 cores those threads spin against the request threads
  (throughput roughly halved). Setting it inside the service is too late: the threads that
  run the model are created before ``__init__`` runs.
- ``BENTOML_DO_NOT_TRACK``: no usage analytics from an offline machine.
- ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``: no progress bars in the server log.
- ``BENTOML_HOME`` under the state folder: BentoML keeps its Prometheus multiprocess files
  in ``$BENTOML_HOME/prometheus_multiproc_dir`` and clears them at start-up, so two servers
  sharing the default ``~/bentoml`` (a test beside ``make serve``) count each other's
  requests, or wipe them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ranklab.settings import REPO_ROOT, get_settings

SERVICE = "serving.service:RankingService"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000

SERVER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PYTHONUNBUFFERED": "1",
}


def server_command(
    port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, working_dir: Path = REPO_ROOT
) -> list[str]:
    """``bentoml serve`` for the ranking service, from the repository root.

    ``working_dir``: another checkout of the repository to serve its code instead (the
    serving benchmark's before/after comparison); it goes first on the server's import path.
    """
    bentoml = Path(sys.executable).with_name("bentoml")
    return [
        str(bentoml),
        "serve",
        SERVICE,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(working_dir),
    ]


def server_env(
    base: Mapping[str, str] | None = None, workers: int | None = None, **extra: str
) -> dict[str, str]:
    """``base`` (default: this process's environment) with the serving fixes applied.

    ``workers`` sets BentoML's worker count; ``extra`` adds variables such as
    ``RANKLAB_STATE_DIR`` or ``RANKLAB_SERVING__API_KEY``.
    """
    env = dict(os.environ if base is None else base)
    env.update(SERVER_ENVIRONMENT)
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        env["BENTOML_CONFIG_OPTIONS"] = f"services.ranking.workers={workers}"
    env.update(extra)
    env.setdefault("BENTOML_HOME", str(_state_dir(env) / "bentoml"))
    return env


def _state_dir(env: Mapping[str, str]) -> Path:
    """The state folder the server will use: ``RANKLAB_STATE_DIR`` in its environment, else
    the settings' default."""
    if env.get("RANKLAB_STATE_DIR"):
        return Path(env["RANKLAB_STATE_DIR"]).expanduser().resolve()
    return get_settings().root


def exec_server(
    port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, workers: int | None = None
) -> None:
    """Replace this process with the server (``make serve``); Ctrl-C stops it gracefully."""
    command = server_command(port, host)
    os.execve(command[0], command, server_env(workers=workers))
