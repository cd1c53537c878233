"""Pseudonyms: keyed, stable across processes, from the configured key or the state's."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from ranklab.privacy import (
    KEY_ENV,
    KEY_FILE,
    Pseudonymiser,
    PseudonymKeyError,
    development_key,
    pseudonymiser_for,
)
from ranklab.settings import Settings


def test_a_pseudonym_is_stable_keyed_and_not_the_id():
    a, b = Pseudonymiser(b"k" * 32), Pseudonymiser(b"q" * 32)
    assert a(42) == Pseudonymiser(b"k" * 32)(42)
    assert a(42) != b(42) and a(42) != a(43) and a(42) != 42
    assert a.many([42, 43]).tolist() == [a(42), a(43)]
    assert "k" * 32 not in repr(a)


def test_the_same_key_gives_the_same_pseudonym_in_another_process():
    code = "from ranklab.privacy import Pseudonymiser; print(Pseudonymiser(b'k' * 32)(42))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == Pseudonymiser(b"k" * 32)(42)


def test_a_short_key_is_refused_naming_the_variable():
    with pytest.raises(PseudonymKeyError, match=KEY_ENV):
        Pseudonymiser(b"short")


def test_the_configured_key_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "c" * 40)
    settings = Settings(state_dir=tmp_path)
    assert pseudonymiser_for(settings)(1) == Pseudonymiser(b"c" * 40)(1)
    assert not (tmp_path / KEY_FILE).exists()  # nothing generated when a key is configured


def test_the_local_profile_generates_one_private_key_into_the_state(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    settings = Settings(state_dir=tmp_path)
    first = pseudonymiser_for(settings)(7)
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert development_key(tmp_path) == key_file.read_bytes().strip()  # reused, not replaced
    assert Pseudonymiser(key_file.read_bytes().strip())(7) == first
    other = Settings(state_dir=tmp_path / "other")
    assert pseudonymiser_for(other)(7) != first  # another state, another key


def test_the_services_profile_refuses_to_run_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(PseudonymKeyError, match=f"services profile needs .*{KEY_ENV}"):
        pseudonymiser_for(Settings(state_dir=tmp_path, profile="services"))
