"""The ranking request contract: what is accepted, and the message for what is not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ranklab.schema import CATEGORIES, DEVICES, REGIONS
from serving.schemas import RankingContext, RankRequest

CONTEXT = {"device": "mobile", "region": "north", "query_category": "books"}


def request(**changes) -> dict:
    return {"user_id": 7, "context": CONTEXT, "candidates": [3, 1, 2], **changes}


def test_a_valid_request_parses_with_k_optional():
    parsed = RankRequest.model_validate(request())
    assert (parsed.user_id, parsed.candidates, parsed.k) == (7, [3, 1, 2], None)
    assert RankRequest.model_validate(request(k=2)).k == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"user_id": "7"}, r"user_id\n  Input should be a valid integer"),
        ({"user_id": 7.0}, r"user_id\n  Input should be a valid integer"),
        ({"user_id": True}, r"user_id\n  Input should be a valid integer"),
        ({"user_id": -1}, r"user_id\n  Input should be greater than or equal to 0"),
        ({"user_id": 2**63}, r"user_id\n  Input should be less than or equal to"),
        ({"candidates": []}, r"candidates\n  List should have at least 1 item"),
        ({"candidates": list(range(1001))}, r"candidates\n  List should have at most 1000 items"),
        ({"candidates": [5, 5, 6, 6]}, r"candidates must be unique; repeated item ids: \[5, 6\]"),
        ({"candidates": [1, "2"]}, r"candidates\.1\n  Input should be a valid integer"),
        ({"k": 0}, r"k\n  Input should be greater than or equal to 1"),
        ({"extra": 1}, r"extra\n  Extra inputs are not permitted"),
        ({"context": {**CONTEXT, "device": "watch"}}, r"context\.device\n  Input should be"),
        ({"context": {**CONTEXT, "hour": 3}}, r"context\.hour\n  Extra inputs are not permitted"),
        ({"context": {"device": "mobile"}}, r"context\.region\n  Field required"),
    ],
)
def test_invalid_requests_name_the_field(changes, message):
    with pytest.raises(ValidationError, match=message):
        RankRequest.model_validate(request(**changes))


def test_nan_in_json_is_not_a_number_here():
    body = '{"user_id": NaN, "context": {"device": "mobile", "region": "north", '
    body += '"query_category": "books"}, "candidates": [1]}'
    with pytest.raises(ValidationError, match="user_id"):
        RankRequest.model_validate_json(body)


def test_context_vocabulary_is_the_marketplace_vocabulary():
    fields = RankingContext.model_json_schema()["properties"]
    assert tuple(fields["device"]["enum"]) == DEVICES
    assert tuple(fields["region"]["enum"]) == REGIONS
    assert tuple(fields["query_category"]["enum"]) == CATEGORIES


def test_openapi_schema_states_the_candidate_limits():
    candidates = RankRequest.model_json_schema()["properties"]["candidates"]
    assert (candidates["minItems"], candidates["maxItems"], candidates["uniqueItems"]) == (
        1,
        1000,
        True,
    )
