"""The server's command line and environment (what every caller starts it with)."""

from __future__ import annotations

import pytest

from serving.launch import SERVICE, server_command, server_env


def test_the_server_binds_loopback_on_the_given_port():
    command = server_command(port=3111)
    assert command[1:3] == ["serve", SERVICE]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "3111"


def test_the_environment_pins_one_thread_per_library_and_keeps_the_caller_variables():
    env = server_env({"PATH": "/bin", "OMP_NUM_THREADS": "8"}, RANKLAB_STATE_DIR="/tmp/s")
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]) == ("1", "1")
    assert (env["PATH"], env["RANKLAB_STATE_DIR"]) == ("/bin", "/tmp/s")
    assert "BENTOML_CONFIG_OPTIONS" not in env


def test_each_state_folder_gets_its_own_bentoml_home_so_servers_do_not_share_metrics():
    one = server_env({}, RANKLAB_STATE_DIR="/tmp/one")["BENTOML_HOME"]
    two = server_env({}, RANKLAB_STATE_DIR="/tmp/two")["BENTOML_HOME"]
    assert (one, two) == ("/tmp/one/bentoml", "/tmp/two/bentoml")
    assert server_env({"BENTOML_HOME": "/srv/b"})["BENTOML_HOME"] == "/srv/b"


def test_workers_go_through_bentoml_config():
    assert server_env({}, workers=2)["BENTOML_CONFIG_OPTIONS"] == "services.ranking.workers=2"
    with pytest.raises(ValueError, match="workers must be >= 1"):
        server_env({}, workers=0)
