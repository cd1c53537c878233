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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ranklab.settings import REPO_ROOT

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


def server_command(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> list[str]:
    """``bentoml serve`` for the ranking service, from the repository root."""
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
        str(REPO_ROOT),
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
    return env


def exec_server(
    port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, workers: int | None = None
) -> None:
    """Replace this process with the server (``make serve``); Ctrl-C stops it gracefully."""
    command = server_command(port, host)
    os.execve(command[0], command, server_env(workers=workers))
