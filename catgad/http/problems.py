"""RFC 9457 problem responses: the HTTP face of the error tree, and the request-id guard.

One exception handler on CatgadError renders every error catgad raises on
purpose; HTTPException (unknown route, wrong method) gets the same shape; any
other exception becomes a generic 500 whose traceback goes only to the log,
tagged with the request id that the client also receives.
"""

from __future__ import annotations

import itertools
import os
from http import HTTPStatus
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catgad.errors import PROBLEM_BASE, CatgadError
from catgad.observability.context import REQUEST_ID
from catgad.observability.logs import get_logger

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "x-request-id"
# Seconds a client should wait before retrying a retryable (503) error.
RETRY_AFTER = "1"

log = get_logger("catgad.http")


# HTTP errors starlette raises itself (routing), with a stable type per kind.
_HTTP_SLUGS = {404: "route-not-found", 405: "method-not-allowed"}


def problem_response(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def request_id(request: Request) -> str:
    rid = request.scope.get("catgad.request_id")
    return rid if isinstance(rid, str) else "-"


async def catgad_error_handler(request: Request, exc: Exception) -> Response:
    """The one handler for the whole error tree (starlette looks handlers up along the MRO)."""
    assert isinstance(exc, CatgadError)
    body = exc.problem(request.url.path)
    headers: dict[str, str] | None = exc.headers() or None
    if exc.retryable:
        headers = {**(headers or {}), "Retry-After": RETRY_AFTER}
    if exc.status >= 500:
        rid = request_id(request)
        body["request_id"] = rid
        log.error(
            "request failed",
            request_id=rid,
            method=request.method,
            path=request.url.path,
            error=exc.slug,
            detail=exc.detail,
            exc_info=exc.status == 500,
        )
    return problem_response(body, exc.status, headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Routing errors (404, 405) as problem+json instead of starlette's plain text."""
    assert isinstance(exc, HTTPException)
    slug = _HTTP_SLUGS.get(exc.status_code)
    body = {
        "type": PROBLEM_BASE + slug if slug else "about:blank",
        "title": _title(exc.status_code),
        "status": exc.status_code,
        "detail": _http_detail(request, exc),
        "instance": request.url.path,
    }
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request) or headers.get("Allow", "")
        body["detail"] = (
            f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
        )
    return problem_response(body, exc.status_code, headers)


def _allowed(request: Request) -> str:
    """Every method some route serves on this path: starlette's 405 names only the first
    route matching the path, and a path has one route per method (catgad.http.access)."""
    methods: set[str] = set()
    for route in getattr(request.app, "routes", ()):
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match != Match.NONE:
                methods.update(route.methods)
    return ", ".join(sorted(methods))


def _http_detail(request: Request, exc: HTTPException) -> str:
    if exc.status_code == 404:
        return f"no route for {request.url.path}"
    return str(exc.detail)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


RESPONSE_STARTED = "catgad.response_started"  # scope key: the answer's head is on its way


def with_request_id(send: Send, scope: Scope) -> Send:
    """`send`, adding the request's `X-Request-Id` to the answer's head (and marking the
    scope: the answer has started)."""
    raw_rid = str(scope["catgad.request_id"]).encode("latin-1")

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            scope[RESPONSE_STARTED] = True
            message["headers"] = [*message.get("headers", ()), (b"x-request-id", raw_rid)]
        await send(message)

    return send_with_id


class RequestContext:
    """Pure ASGI middleware: gives each request an id and turns stray exceptions into a 500
    (but for a client gone before its request was read: logged, and not answered).

    The id is the client's `X-Request-Id` when it sent a short one, else a
    process-unique counter; it comes back on every response. An app made with
    `adds_id=True` (catgad.http.fastpath) puts it on its answers itself, sets
    RESPONSE_STARTED in the scope when it starts one, and is given `send` as it is.
    """

    def __init__(self, app: ASGIApp, *, adds_id: bool = False) -> None:
        self.app = app
        self.adds_id = adds_id
        self._prefix = f"{os.getpid():x}-"
        self._counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _client_request_id(scope) or f"{self._prefix}{next(self._counter)}"
        scope["catgad.request_id"] = rid
        REQUEST_ID.set(rid)  # on every log line of this request (its own task)
        try:
            await self.app(scope, receive, send if self.adds_id else with_request_id(send, scope))
        except ClientDisconnect:
            # gone before its body arrived (a stalled upload, a killed client): no one to
            # answer, and nothing went wrong here
            log.info(
                "client disconnected before its request was read",
                request_id=rid,
                method=scope.get("method"),
                path=scope.get("path", ""),
            )
        except Exception:
            path = scope.get("path", "")
            log.exception("unhandled error", request_id=rid, method=scope.get("method"), path=path)
            if scope.get(RESPONSE_STARTED):  # half sent; all we can do is drop the connection
                raise
            body = CatgadError(f"internal error; the log has the details under request id {rid}")
            problem = body.problem(path)
            problem["request_id"] = rid
            response = problem_response(problem, 500)
            await response(scope, receive, with_request_id(send, scope))


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if 0 < len(value) <= 128 and value.isascii():
                text: str = value.decode("ascii")
                if text.isprintable():
                    return text
            return None
    return None
