"""POST /commands/{type} without Starlette's router, Request object and exception middleware.

Profiled under wrk, a third of the daemon's main thread per command went to the
layers between uvicorn and the endpoint (routing, the Request and its Headers,
the exception middleware and its wrappers, the Response object). This pure
ASGI middleware sits inside RequestContext (request id, the 500 guard) and
serves the one hot route itself, through the same Endpoints.run_command, the
same token check and the same problem rendering as the route; anything else
(another path or method, a root path) goes on to the app unchanged.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from catgad.errors import CatgadError, PayloadTooLarge
from catgad.http.access import Access
from catgad.http.problems import catgad_error_handler
from catgad.http.routes import JSON, MAX_BODY_BYTES, Endpoints

PREFIX = "/commands/"
_WANTED = {
    b"idempotency-key": "idempotency-key",
    b"if-match": "if-match",
    b"content-type": "content-type",
    b"content-length": "content-length",
    b"authorization": "authorization",
    b"traceparent": "traceparent",  # W3C trace context, continued by the command's span
    b"tracestate": "tracestate",
}
_JSON = JSON.encode()


class CommandPath:
    """Serves POST /commands/{type}; every other request goes to `app`."""

    def __init__(self, app: ASGIApp, *, endpoints: Endpoints, access: Access) -> None:
        self.app = app
        self.endpoints = endpoints
        self.access = access
        self.guarded = access.enabled and access.declared.get(
            ("POST", "/commands/{command_type}")
        ) not in (None, "open")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.startswith(PREFIX)
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        command_type = path[len(PREFIX) :]
        if not command_type or "/" in command_type:  # the router's 404
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        wanted = _WANTED
        for name, value in scope["headers"]:
            key = wanted.get(name)
            if key is not None and key not in headers:  # the first, as Starlette's Headers
                headers[key] = value.decode("latin-1")
        try:
            if self.guarded:
                token = self.access.authenticate(headers.get("authorization"))
                self.access.require(token, "commands")
                scope.setdefault("state", {})["token"] = token
            status, body, extra = await self.endpoints.run_command(
                command_type,
                headers.get("idempotency-key"),
                headers.get("if-match"),
                headers.get("content-type", ""),
                lambda: _read_body(receive, headers.get("content-length")),
                headers,
            )
        except CatgadError as exc:
            response = await catgad_error_handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"etag", extra["ETag"].encode("latin-1")),
                    (b"location", extra["Location"].encode("latin-1")),
                    (b"content-length", str(len(body)).encode("latin-1")),
                    (b"content-type", _JSON),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, declared: str | None, limit: int = MAX_BODY_BYTES) -> bytes:
    """As routes.read_body on a Request: refuse more than `limit` bytes before reading them."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Any = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
