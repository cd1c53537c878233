"""The playground's compare request: two named models, in the arms' reference syntax."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from serving.playground import STATIC_DIR, CompareRequest

BODY = {
    "user_id": 7,
    "context": {"device": "mobile", "region": "north", "query_category": "books"},
    "candidates": [1, 2, 3],
}


def test_a_compare_request_names_two_models_as_aliases_or_versions():
    request = CompareRequest.model_validate_json(
        json.dumps({**BODY, "models": ["alias:champion", "version:02"]})
    )
    assert request.models == ["alias:champion", "version:2"]


@pytest.mark.parametrize(
    "models",
    [["alias:champion"], ["alias:champion", "challenger"], ["alias:a", "alias:b", "alias:c"]],
)
def test_a_compare_request_without_exactly_two_valid_models_is_refused(models):
    with pytest.raises(ValidationError):
        CompareRequest.model_validate_json(json.dumps({**BODY, "models": models}))


def test_the_page_needs_no_build_step_and_no_network():
    files = {path.name for path in STATIC_DIR.iterdir()}
    assert {"index.html", "playground.js", "playground.css"} <= files
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, path  # nothing fetched outside
