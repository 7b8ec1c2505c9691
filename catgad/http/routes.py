"""The HTTP endpoints: commands in, streams and aggregates out, health and metrics.

Behaviour decisions (also stated in the OpenAPI document):

- `POST /commands/{type}` answers 201 when the command created its stream,
  200 otherwise (including a retried duplicate, which carries `duplicate: true`).
  `If-Match` is the expected stream version: `3` or `"3"`; anything else is a 400.
- `GET /streams/{id}?from=N&limit=M`: `from` is the first stream version to
  return, 1-based and inclusive (0 and 1 both mean "from the start");
  `limit` caps the page, and `next` links the following page when there is one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catgad.aggregates.payload import beyond_64_bits
from catgad.envelope import is_cloudevent
from catgad.errors import (
    FieldError,
    InvalidPayload,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from catgad.http.access import OPEN, Access
from catgad.observability import tracing
from catgad.observability.metrics import CONTENT_TYPE_LATEST
from catgad.runtime import Runtime

JSON = "application/json"
CLOUDEVENTS_JSON = "application/cloudevents+json"
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
READY_TIMEOUT = 2.0  # seconds a dependency may take to answer /readyz
_MAX_VERSION_DIGITS = 18  # fits an int64; longer is a malformed header, not a version
MAX_IDEMPOTENCY_KEY = 200
_OWS = " \t"  # the spaces HTTP allows around a header value; str.strip() takes more
# Deepest body accepted: far beyond any command, and well within what is needed after it
# (orjson writes at most 255 levels, the schema messages recurse in Python).
MAX_DEPTH = 128
_BOM = b"\xef\xbb\xbf"
# 19 digits in a row: where an integer orjson turned into a float may be (2**63 has 19);
# found by mapping every digit to 0 (a regular expression takes twice as long)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type=JSON)


def stream_location(stream: str) -> str:
    return "/streams/" + quote(stream, safe="")


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    """`If-Match: 3` or `If-Match: "3"` → 3; absent → None; anything else → 400."""
    if value is None:
        return None
    text = value.strip(_OWS)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_VERSION_DIGITS):
        raise MalformedRequest(
            "header If-Match",
            f'If-Match must be the expected stream version, an integer such as 3 or "3"; '
            f"got {value!r}",
        )
    return int(text)


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    key = value.strip(_OWS)
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not (key.isascii() and key.isprintable()):
        raise MalformedRequest(
            "header Idempotency-Key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
        )
    return key


def query_int(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    given = request.query_params.getlist(name)
    if not given:
        return default
    if len(given) > 1:
        raise MalformedRequest(f"query {name}", f"{name} is given {len(given)} times; give it once")
    raw = given[0]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_VERSION_DIGITS):
        raise MalformedRequest(
            f"query {name}", f"{name} must be a non-negative integer, got {raw!r}"
        )
    value = int(raw)
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise MalformedRequest(f"query {name}", f"{name} must be {bounds}, got {value}")
    return value


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """The JSON body; 400 for one that is empty, not UTF-8, not JSON, nested deeper than
    MAX_DEPTH, or holding what no store keeps: an integer beyond 64 bits, a NUL character."""
    if not raw:
        raise MalformedRequest("body", "the body is empty; send the command's data as JSON")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest("body", _not_json(raw, exc)) from None
    # cheap guards first: too few bytes or brackets to nest that deep, and no long run of
    # digits, is the rule
    if (
        len(raw) > 2 * MAX_DEPTH
        and raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
        and _deeper_than(body, MAX_DEPTH)
    ):
        raise MalformedRequest("body", _TOO_DEEP)
    if _LONG_DIGITS in raw.translate(_DIGITS_TO_ZERO):
        _refuse_huge_integers(raw)
    if b"\\u0000" in raw:
        pointer = _nul_at(body)
        if pointer is not None:
            why = "a string with a NUL character (\\u0000) cannot be stored"
            raise InvalidPayload(f"{pointer}: {why}", [FieldError(pointer, why)])
    return body


_TOO_DEEP = f"the body nests deeper than {MAX_DEPTH} levels"


def _not_json(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Why orjson refused `raw`, said without its internals where a better word exists."""
    if raw.startswith(_BOM):
        return "the body starts with a UTF-8 byte order mark; send the JSON without it"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"the body is not UTF-8: byte 0x{raw[bad.start]:02x} at offset {bad.start}"
    if "depth limit" in str(exc):
        return _TOO_DEEP
    return f"the body is not valid JSON: {exc}"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests arrays and objects more than `limit` levels (without recursion)."""
    level: list[Any] = [value] if type(value) is dict or type(value) is list else []
    for _ in range(limit):
        if not level:
            return False
        level = [
            member
            for node in level
            for member in (node.values() if type(node) is dict else node)
            if type(member) is dict or type(member) is list
        ]
    return bool(level)


def _nul_at(value: Any, at: str = "") -> str | None:
    """The JSON Pointer of the first string or member name holding a NUL, if any: PostgreSQL
    keeps none in a text column, SQLite none in a stream id (the body is at most MAX_DEPTH
    deep)."""
    kind = type(value)
    if kind is str:
        return (at or "/") if "\x00" in value else None
    if kind is dict:
        for key, member in value.items():
            here = f"{at}/{key.replace('~', '~0').replace('/', '~1')}"
            found = here if "\x00" in key else _nul_at(member, here)
            if found is not None:
                return found
    elif kind is list:
        for index, member in enumerate(value):
            found = _nul_at(member, f"{at}/{index}")
            if found is not None:
                return found
    return None


def _big_int(digits: str) -> int:
    # only whether it fits matters: a long run of digits need not be converted at all
    return int(digits) if len(digits) <= 21 else 2**64


def _refuse_huge_integers(raw: bytes) -> None:
    """InvalidPayload for an integer beyond 64 bits, which orjson reads as a float.

    The body is read again, exactly, only when it holds 19 digits in a row; its depth is
    already known to be within MAX_DEPTH, and orjson accepted it.
    """
    try:
        exact = json.loads(raw, parse_int=_big_int)
    except ValueError:  # not seen: Python's reader accepts all that orjson's does
        raise MalformedRequest("body", "the body is not valid JSON") from None
    pointer = beyond_64_bits(exact)
    if pointer is not None:
        why = "an integer beyond 64 bits cannot be stored"
        raise InvalidPayload(f"{pointer}: {why}", [FieldError(pointer, why)])


class Endpoints:
    """The route handlers, bound to one runtime (closures are cheaper than app.state lookups)."""

    def __init__(self, runtime: Runtime, openapi: dict[str, Any]) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.store = runtime.store
        self.openapi_document = openapi  # the app adds who may call what (its access)
        self._openapi: bytes | None = None

    def routes(self, access: Access) -> list[Route]:
        route = access.route
        return [
            route("commands", "/commands/{command_type}", self.command, "POST"),
            route("read", "/streams/{stream_id:path}", self.stream, "GET"),
            route("read", "/aggregates/{aggregate_type}/{instance_id:path}", self.aggregate, "GET"),
            route(OPEN, "/healthz", self.healthz, "GET"),
            route(OPEN, "/readyz", self.readyz, "GET"),
            route("read", "/metrics", self.metrics, "GET"),
            route("read", "/openapi.json", self.openapi, "GET"),
        ]

    async def command(self, request: Request) -> Response:
        headers = request.headers
        status, body, extra = await self.run_command(
            request.path_params["command_type"],
            headers.get("idempotency-key"),
            headers.get("if-match"),
            headers.get("content-type", ""),
            lambda: read_body(request),
            headers,
        )
        return Response(body, status, headers=extra, media_type=JSON)

    async def run_command(
        self,
        command_type: str,
        idempotency_key: str | None,
        if_match: str | None,
        content_type: str,
        body_reader: Callable[[], Awaitable[bytes]],
        headers: Mapping[str, str],
    ) -> tuple[int, bytes, dict[str, str]]:
        """POST /commands/{type}: status, JSON body and headers of the success; errors raised.
        Shared by the route and catgad.http.fastpath, which reads the request itself."""
        self.engine.command_def(command_type)  # 404 before reading a body we cannot use
        command_id = parse_idempotency_key(idempotency_key)
        expected = parse_if_match(if_match)
        body = parse_json(await body_reader())
        if content_type.startswith(CLOUDEVENTS_JSON) and not is_cloudevent(body):
            raise MalformedRequest(
                "body",
                f"a {CLOUDEVENTS_JSON} body must be a structured CloudEvent with specversion",
            )
        with tracing.http_span(headers, command_type):
            result = await self.runtime.execute(
                command_type, body, command_id=command_id, expected_version=expected
            )
        return (
            201 if result.created else 200,
            orjson.dumps(result.to_dict()),
            {"ETag": etag(result.version), "Location": stream_location(result.stream)},
        )

    async def stream(self, request: Request) -> Response:
        stream_id: str = request.path_params["stream_id"]
        first = max(query_int(request, "from", 1, 0), 1)
        limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        if "\x00" in stream_id:  # none is written (parse_json); PostgreSQL refuses to look
            raise NotFound("stream", stream_id)
        events = await self.store.read(stream_id, after=first - 1, limit=limit + 1)
        more = len(events) > limit
        if more:
            del events[limit:]
        if events and not more:
            version = events[-1].streamversion or first - 1 + len(events)
        else:
            version = await self.store.stream_version(stream_id)
        if version == 0:
            raise NotFound("stream", stream_id)
        body: dict[str, Any] = {
            "stream": stream_id,
            "version": version,
            "from": first,
            "events": [e.to_dict() for e in events],
        }
        if more:
            after = events[-1].streamversion or first - 1 + len(events)
            body["next"] = f"{stream_location(stream_id)}?from={after + 1}&limit={limit}"
        return json_response(body, headers={"ETag": etag(version)})

    async def aggregate(self, request: Request) -> Response:
        aggregate_type: str = request.path_params["aggregate_type"]
        instance_id: str = request.path_params["instance_id"]
        if "\x00" in instance_id and aggregate_type in self.runtime.config.aggregates:
            raise NotFound(f"{aggregate_type} aggregate", instance_id)  # as for stream()
        stream, loaded = await self.engine.aggregate_state(aggregate_type, instance_id)
        body = {
            "type": aggregate_type,
            "id": instance_id,
            "stream": stream,
            "version": loaded.version,
            "state": loaded.state,
        }
        return json_response(body, headers={"ETag": etag(loaded.version)})

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                checks = await self.runtime.check_ready()
        except TimeoutError:
            raise Unavailable("store or bus", f"no answer within {READY_TIMEOUT:g}s") from None
        return json_response({"status": "ready", "checks": checks})

    async def metrics(self, request: Request) -> Response:
        return Response(
            self.runtime.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            self._openapi = orjson.dumps(self.openapi_document)
        return Response(self._openapi, media_type=JSON)
