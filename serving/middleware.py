"""ASGI middleware in front of the BentoML app: request guards and a detailed /readyz.

``RequestGuard`` answers before BentoML parses anything:
- 401 when an API key is configured (``RANKLAB_SERVING__API_KEY``) and the request does not
  send it in ``x-api-key`` (the probes and /metrics stay open for the orchestrator, and the
  playground's static files for a browser: the page sends the key it is given);
- 413 when the body is larger than ``max_body_bytes``, whether announced by
  ``content-length`` or streamed in chunks (it is read, bounded, and replayed);
- 415 for a body that is not JSON (BentoML would otherwise try multipart or pickle).

``ReadinessDetail`` answers ``GET /readyz`` with the runtime's readiness as JSON (which
model, from where, registry and store state), 200 or 503, where BentoML's own probe can
only say yes or no.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import bentoml

from ranklab.settings import get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = "x-api-key"  # where RANKLAB_SERVING__API_KEY is expected
OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/metrics"})
# The playground's static files hold no data (its API calls send the key like any client).
OPEN_PAGE_PREFIX, PAGE_API_PREFIX = "/playground", "/playground/api/"
JSON_MEDIA_TYPE = "application/json"


class RequestGuard:
    """API key, body size and media type checks; settings come from the environment."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        serving = get_settings().serving  # built in the worker, when the app is assembled
        self.api_key = None if serving.api_key is None else serving.api_key.get_secret_value()
        self.max_body_bytes = serving.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or _is_open_page(scope):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.api_key is not None and not hmac.compare_digest(
            headers.get(API_KEY_HEADER, "").encode(), self.api_key.encode()
        ):
            await _json(
                send, 401, {"error": f"missing or wrong API key in header {API_KEY_HEADER!r}"}
            )
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        media_type = headers.get("content-type", JSON_MEDIA_TYPE).split(";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            await _json(
                send, 415, {"error": f"content-type must be {JSON_MEDIA_TYPE}, got {media_type!r}"}
            )
            return
        body = await self._bounded_body(headers, receive)
        if body is None:
            await _json(
                send, 413, {"error": f"request body is larger than {self.max_body_bytes} bytes"}
            )
            return
        await self.app(scope, _replay(body, receive), send)

    async def _bounded_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


class ReadinessDetail:
    """``GET /readyz``: 200 or 503 with the runtime's readiness detail as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/readyz":
            await self.app(scope, receive, send)
            return
        try:
            runtime = bentoml.get_current_service().runtime
        except Exception:  # noqa: BLE001 - no service instance yet: starting up
            await _json(send, 503, {"ready": False, "status": "starting"})
            return
        readiness = await runtime.readiness()
        await _json(send, 200 if readiness.ready else 503, readiness.detail)


def _is_open_page(scope: Scope) -> bool:
    path = scope["path"]
    return (
        scope["method"] == "GET"
        and path.startswith(OPEN_PAGE_PREFIX)
        and not path.startswith(PAGE_API_PREFIX)
    )


def _headers(scope: Scope) -> dict[str, str]:
    return {
        key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]
    }


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the already-read body, then defers to the client."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, default=str).encode()
    headers = [
        (b"content-type", JSON_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
