"""docs/data-governance.md lists every field the real schemas store, and nothing else."""

from __future__ import annotations

import re

import pytest

from features.validation import SCHEMAS
from ranklab.settings import REPO_ROOT, PrivacySettings
from serving.prediction_log import SCHEMA

DOC = REPO_ROOT / "docs" / "data-governance.md"


def documented_fields(store: str, text: str | None = None) -> list[str]:
    """The first column of the table under ``<!-- store: NAME -->``."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    marker = f"<!-- store: {store} -->"
    if marker not in text:
        raise KeyError(f"{DOC.name} has no table marked {marker}")
    rows = []
    for line in text.split(marker, 1)[1].splitlines()[1:]:
        if not line.startswith("|"):
            break
        rows.append(line.strip("|").split("|")[0].strip())
    body = rows[2:]  # header and separator
    assert all(body), f"an empty field name in the {store} table"
    return body


def raw_event_fields() -> set[str]:
    fields = set()
    for table, schema in SCHEMAS.items():
        for name in schema.columns:
            fields.add(f"{table}.latent_*" if name == "latent_.+" else f"{table}.{name}")
    return fields


def test_every_prediction_log_field_is_documented_once():
    documented = documented_fields("prediction_log")
    assert len(documented) == len(set(documented))
    assert set(documented) == set(SCHEMA.names)


def test_every_raw_event_field_is_documented_once():
    documented = documented_fields("raw_events")
    assert len(documented) == len(set(documented))
    assert set(documented) == raw_event_fields()


def test_the_prediction_log_stores_no_raw_user_id():
    assert "user_id" not in SCHEMA.names
    assert "user_pseudonym" in SCHEMA.names


def test_a_schema_field_missing_from_the_doc_is_caught():
    text = DOC.read_text(encoding="utf-8")
    without = re.sub(r"^\| experiment_arm \|.*\n", "", text, flags=re.M)
    assert set(documented_fields("prediction_log", without)) != set(SCHEMA.names)
    with pytest.raises(KeyError, match="no table marked"):
        documented_fields("nowhere", text)


def test_the_documented_retention_is_the_default():
    text = DOC.read_text(encoding="utf-8")
    defaults = PrivacySettings()
    assert f"default **{defaults.retention_days}**" in text
    assert f"`{defaults.retention_cron}`" in text
    for question in ("Legal basis", "Consent", "Erasure requests"):
        assert re.search(rf"^\| {question}.*\| _to fill_ \|$", text, flags=re.M), question
