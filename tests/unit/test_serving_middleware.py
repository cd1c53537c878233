"""The request guards in front of the service, on a tiny ASGI app that echoes the body."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from serving.middleware import RequestGuard


async def echo(scope, receive, send) -> None:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=RequestGuard(echo))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("RANKLAB_SERVING__API_KEY", "s3cret")
    return "s3cret"


def test_a_json_body_within_the_limit_reaches_the_app_unchanged():
    response = call("POST", "/rank", json={"user_id": 1})
    assert (response.status_code, response.content) == (200, b'{"user_id":1}')


def test_without_a_configured_key_no_key_is_needed():
    assert call("POST", "/rank", json={}).status_code == 200


def test_with_a_configured_key_requests_need_it_but_probes_do_not(api_key):
    assert call("POST", "/rank", json={}).status_code == 401
    assert call("POST", "/rank", json={}, headers={"x-api-key": "wrong"}).status_code == 401
    assert call("POST", "/rank", json={}, headers={"x-api-key": api_key}).status_code == 200
    for probe in ("/livez", "/readyz", "/metrics"):
        assert call("GET", probe).status_code == 200


def test_with_a_key_the_playground_page_is_open_but_its_api_is_not(api_key):
    for page in ("/playground", "/playground/", "/playground/playground.js"):
        assert call("GET", page).status_code == 200, page
    assert call("GET", "/playground/api/options").status_code == 401
    assert call("POST", "/playground/api/compare", json={}).status_code == 401
    assert call("POST", "/playground/", json={}).status_code == 401  # only GETs are open
    assert call("GET", "/playground/api/options", headers={"x-api-key": api_key}).status_code == 200


def test_an_announced_oversized_body_is_a_413(monkeypatch):
    monkeypatch.setenv("RANKLAB_SERVING__MAX_BODY_BYTES", "100")
    response = call(
        "POST", "/rank", content=b"x" * 101, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"error": "request body is larger than 100 bytes"}


def test_a_streamed_oversized_body_is_a_413(monkeypatch):
    monkeypatch.setenv("RANKLAB_SERVING__MAX_BODY_BYTES", "100")

    async def chunks():
        for _ in range(5):
            yield b"x" * 30  # no content-length: counted as it arrives

    assert call("POST", "/rank", content=chunks()).status_code == 413


def test_a_body_that_is_not_json_is_a_415():
    response = call(
        "POST", "/rank", content=b"a=1", headers={"content-type": "multipart/form-data"}
    )
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["error"]
