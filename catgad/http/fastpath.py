"""POST /commands/{type} without Starlette's router, Request object and middleware.

Profiled under wrk, a third of the daemon's main thread per command went to the
layers between uvicorn and the endpoint (routing, the Request and its Headers,
the exception middleware and its wrappers, the Response object). CommandPath
serves the one hot route itself, through the same Endpoints.run_command, the
same token check and the same problem rendering as the route. The app
(catgad.http.app.CatgadApp) hands it the requests `serves` picks, inside
RequestContext (request id, the 500 guard) but ahead of Starlette's own stack;
anything else (another path or method, a root path) goes to Starlette unchanged.
Its answer puts the request id on itself and goes out in one write on uvicorn's
connection where it can (catgad.http.direct).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from catgad.errors import CatgadError, PayloadTooLarge
from catgad.http import direct
from catgad.http.access import Access
from catgad.http.problems import RESPONSE_STARTED, catgad_error_handler, with_request_id
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


def serves(scope: Scope) -> bool:
    """True for the requests CommandPath serves: POST /commands/{type}, no root path."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return False
    path: str = scope.get("path", "")
    return path.startswith(PREFIX) and len(path) > len(PREFIX) and "/" not in path[len(PREFIX) :]


class CommandPath:
    """Serves POST /commands/{type}: only the requests `serves` picks."""

    def __init__(self, *, endpoints: Endpoints, access: Access) -> None:
        self.endpoints = endpoints
        self.access = access
        self.guarded = access.enabled and access.declared.get(
            ("POST", "/commands/{command_type}")
        ) not in (None, "open")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        command_type = scope["path"][len(PREFIX) :]
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
            await response(scope, receive, with_request_id(send, scope))
            return
        answer_headers = [
            (b"etag", extra["ETag"].encode("latin-1")),
            (b"location", extra["Location"].encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"content-type", _JSON),
            (b"x-request-id", scope["catgad.request_id"].encode("latin-1")),
        ]
        scope[RESPONSE_STARTED] = True
        if direct.answer(send, status, answer_headers, body):  # one write on uvicorn's socket
            return
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
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
