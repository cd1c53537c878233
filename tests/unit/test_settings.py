"""The one settings object: typed, frozen, overridable from the environment, side-effect free."""

from __future__ import annotations

import json

import pydantic
import pytest
from typer.testing import CliRunner

from cli.main import app
from ranklab.settings import Settings, get_settings


def test_environment_overrides_nested_fields(monkeypatch, tmp_path):
    monkeypatch.setenv("RANKLAB_DATA__SCALE", "0.25")
    monkeypatch.setenv("RANKLAB_STATE_DIR", str(tmp_path / "elsewhere"))
    settings = get_settings()
    assert settings.data.scale == 0.25
    assert settings.root == (tmp_path / "elsewhere").resolve()
    assert settings.mlflow_tracking_uri == f"sqlite:///{settings.root / 'mlflow' / 'mlflow.db'}"


def test_unknown_fields_and_bad_values_are_refused_with_the_field_named(monkeypatch):
    with pytest.raises(pydantic.ValidationError, match="bogus"):
        Settings(bogus=1)
    monkeypatch.setenv("RANKLAB_DATA__SCALE", "-1")
    with pytest.raises(pydantic.ValidationError, match="scale"):
        get_settings()


def test_settings_are_frozen():
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        get_settings().seed = 3  # type: ignore[misc]


def test_building_settings_creates_nothing_on_disk(tmp_path):
    settings = Settings(state_dir=tmp_path / "state")
    _ = (settings.raw_dir, settings.feast_dir, settings.mlflow_tracking_uri, settings.reports_dir)
    assert not (tmp_path / "state").exists()


def test_services_profile_points_mlflow_at_postgres():
    settings = Settings(profile="services")
    # The driver is named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which is
    # not installed (psycopg2 is).
    assert settings.mlflow_tracking_uri.startswith("postgresql+psycopg2://")


def test_cli_prints_a_documented_schema():
    result = CliRunner().invoke(app, ["settings", "--schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["properties"]["state_dir"]["description"]
    assert "DataSettings" in schema["$defs"]


def test_serving_section_reads_its_environment_and_the_cli_hides_the_key(monkeypatch):
    monkeypatch.setenv("RANKLAB_SERVING__MODEL_TIMEOUT_MS", "80")
    monkeypatch.setenv("RANKLAB_SERVING__API_KEY", "s3cret")
    serving = get_settings().serving
    assert serving.model_timeout_ms == 80.0
    assert serving.api_key.get_secret_value() == "s3cret"

    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["serving"]
    assert shown["model_timeout_ms"] == 80.0
    assert "s3cret" not in result.output


def test_a_bad_serving_value_is_refused_with_its_name(monkeypatch):
    monkeypatch.setenv("RANKLAB_SERVING__FEATURE_TIMEOUT_MS", "0")
    with pytest.raises(pydantic.ValidationError, match="feature_timeout_ms"):
        get_settings()


def test_privacy_section_reads_its_environment_and_the_cli_hides_the_key(monkeypatch):
    key = "pseudonym-key-that-must-not-be-printed-0123"
    monkeypatch.setenv("RANKLAB_PRIVACY__PSEUDONYM_KEY", key)
    monkeypatch.setenv("RANKLAB_PRIVACY__RETENTION_DAYS", "7")
    privacy = get_settings().privacy
    assert privacy.pseudonym_key.get_secret_value() == key
    assert privacy.retention_days == 7

    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["privacy"]["retention_days"] == 7
    assert key not in result.output


def test_a_retention_of_zero_days_is_refused_with_its_name(monkeypatch):
    monkeypatch.setenv("RANKLAB_PRIVACY__RETENTION_DAYS", "0")
    with pytest.raises(pydantic.ValidationError, match="retention_days"):
        get_settings()
