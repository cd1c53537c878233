"""Fixtures every test tier shares: settings pointed at a fresh temporary state folder."""

from __future__ import annotations

import os

import pytest

# Tests run on 2 shared cores: one thread per library keeps them from fighting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Offline machines: no usage telemetry from the libraries.
for _var, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "FEAST_USAGE": "False",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_var, _value)

# A fixed pseudonymisation key for every test and every server a test starts (they inherit
# the environment): stored pseudonyms are comparable across processes. Not a secret.
os.environ.setdefault("RANKLAB_PRIVACY__PSEUDONYM_KEY", "tests-only-pseudonym-key-0123456789abcdef")

# Feast's modules run warnings.simplefilter("once", DeprecationWarning) when first imported,
# which puts that filter ahead of pyproject's filterwarnings wherever the import happens (a
# test module's collection): our own deprecation warnings would print once, not fail, and
# the allow-list would stop applying. Imported here, before any collection, the filters
# pytest applies around each collected module and each test stay ahead of Feast's.
import feast  # noqa: E402, F401

from ranklab.settings import DataSettings, Settings  # noqa: E402


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings with all state under tmp_path and a tiny data set (a few hundred sessions)."""
    return Settings(
        state_dir=tmp_path / "state",
        data=DataSettings(scale=0.1, n_days=28, n_users=2000, n_items=1000),
    )
