"""Hostile requests: each case of tests/http/hostile/ answers its expected status, never a 500,
never a hang, and leaves the store as it was (unless the case is meant to succeed).

A case file is `{"description", "request", "expect"}`:

- request: `method`; `path`; `headers` (name to value); `body`; `chunked` (stream the body
  in 64 KiB chunks, without Content-Length); `asgi_only` (why a real HTTP parser would
  refuse the request before the app sees it: the case runs in process only). A path, a
  header value or a body is text, or `{"text"}`, `{"base64"}`, `{"repeat", "times"}`, or
  `{"parts": [...]}` of those joined, so that a huge body is made here, not stored.
- expect: `status`; for a problem its `type` (the slug after https://catgad.dev/problems/),
  and optionally `where`, a `detail` substring, the `pointer` of a field error, `max_bytes`
  for the whole answer; for a success the `state` the order then has (types compared too:
  0 is not 0.0).

Every case runs in process over ASGI with a fresh memory store, then on each other store
(SQLite, and the servers tests/helpers/stores.py finds); all but the successes and the
`asgi_only` ones run again against one real daemon (SQLite, uvicorn), where the test also
sends what only a socket can: a declared 2 MiB body never sent, a chunked body over the
limit, and a body that stalls while other requests are answered.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from catgad.app.load import load_config
from catgad.http import create_app
from catgad.runtime import Runtime
from catgad.store.memory import MemoryStore
from catgad.store.protocol import EventStore
from tests.helpers.api import PROBLEM_BASE, PROBLEM_JSON
from tests.helpers.daemon import ORDERS_YAML, Daemon
from tests.helpers.stores import BACKEND_PARAMS, BACKENDS
from tests.support.waiting import eventually

CORPUS = Path(__file__).parent / "hostile"
CASE_FILES = sorted(CORPUS.glob("*.json"))
TIMEOUT = 10.0  # seconds any one answer may take: a hang fails the test
CHUNK = 64 * 1024
STREAM = "Order-o1"  # the stream every case would create


def bytes_of(spec: Any) -> bytes:
    """A path, header value or body as its case file describes it."""
    if isinstance(spec, str):
        return spec.encode()
    if "text" in spec:
        return str(spec["text"]).encode()
    if "base64" in spec:
        return base64.b64decode(spec["base64"])
    if "repeat" in spec:
        return str(spec["repeat"]).encode() * int(spec["times"])
    return b"".join(bytes_of(part) for part in spec["parts"])


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    chunked: bool
    asgi_only: str | None
    expect: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Case:
        doc = json.loads(path.read_text())
        request = doc["request"]
        headers = {k: bytes_of(v).decode() for k, v in request.get("headers", {}).items()}
        return cls(
            name=path.stem,
            description=doc["description"],
            method=request["method"],
            path=bytes_of(request["path"]).decode(),
            headers=headers,
            body=bytes_of(request.get("body", "")),
            chunked=bool(request.get("chunked")),
            asgi_only=request.get("asgi_only"),
            expect=doc["expect"],
        )

    @property
    def succeeds(self) -> bool:
        return int(self.expect["status"]) < 300

    def chunks(self) -> Iterator[bytes]:
        for at in range(0, len(self.body), CHUNK):
            yield self.body[at : at + CHUNK]

    async def achunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk


CASES = [Case.load(path) for path in CASE_FILES]
IDS = [case.name for case in CASES]


def test_the_corpus_covers_the_issue() -> None:
    assert len(CASES) >= 25
    assert len({case.name[:2] for case in CASES}) == len(CASES), "two cases share a number"
    for case in CASES:
        assert case.description and case.expect["status"], case.name
        assert case.succeeds or case.expect.get("type"), case.name
        assert case.path.startswith("/"), case.name


def check_answer(case: Case, resp: httpx.Response) -> dict[str, Any]:
    """The checks every answer gets; returns its JSON body."""
    expect = case.expect
    assert resp.status_code != 500, f"{case.name}: {resp.text[:500]}"
    assert resp.status_code == expect["status"], f"{case.name}: {resp.text[:500]}"
    assert "Traceback" not in resp.text, case.name
    assert resp.headers.get("x-request-id"), case.name
    if "max_bytes" in expect:
        assert len(resp.content) <= expect["max_bytes"], f"{case.name}: {len(resp.content)} bytes"
    body: dict[str, Any] = resp.json()
    if case.succeeds:
        assert resp.headers["content-type"] == "application/json", case.name
        return body
    assert resp.headers["content-type"] == PROBLEM_JSON, case.name
    assert body["type"] == PROBLEM_BASE + expect["type"], f"{case.name}: {body}"
    assert body["status"] == expect["status"], case.name
    assert body["title"] and body["detail"], case.name
    if "where" in expect:
        assert body["where"] == expect["where"], f"{case.name}: {body}"
    if "detail" in expect:
        assert expect["detail"] in body["detail"], f"{case.name}: {body['detail']}"
    if "pointer" in expect:
        assert expect["pointer"] in [e["pointer"] for e in body["errors"]], f"{case.name}: {body}"
    return body


def same(got: Any, want: Any) -> bool:
    """`want` within `got` (dict members it names), with the same JSON types (0 is not 0.0)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and same(got[k], v) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(same(g, w) for g, w in zip(got, want, strict=True))
        )
    return type(got) is type(want) and got == want


# -- in process ---------------------------------------------------------------------------------


async def run_in_process(case: Case, store: EventStore, tmp_path: Path) -> None:
    """`case` on a fresh runtime over `store` (empty): its answer, then what the store holds."""
    env = {
        "CATGAD_READ_SQLITE_PATH": str(tmp_path / "read.db"),
        "CATGAD_REDIS_PROJECTIONS": "false",
    }
    config = load_config(ORDERS_YAML, env=env)
    async with Runtime.start(config, store=store) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://catgad", timeout=TIMEOUT
        ) as client:
            content = case.achunks() if case.chunked else case.body
            started = time.monotonic()
            resp = await client.request(
                case.method, case.path, headers=case.headers, content=content
            )
            assert time.monotonic() - started < TIMEOUT, f"{case.name}: too slow"
            if case.chunked:
                assert "content-length" not in resp.request.headers
            check_answer(case, resp)
            events = await store.read_all()
            if not case.succeeds:
                assert events == [], f"{case.name} changed the store: {events}"
                return
            assert [e.subject for e in events] == [STREAM], case.name
            state = (await client.get("/aggregates/Order/o1")).json()["state"]
            assert same(state, case.expect.get("state", {})), f"{case.name}: {state}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_hostile_request_in_process(case: Case, tmp_path: Path) -> None:
    await run_in_process(case, MemoryStore(), tmp_path)


@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p != "memory"])
async def test_the_corpus_on_every_store(backend: str, tmp_path: Path) -> None:
    """What a store refuses (a NUL in a stream id: PostgreSQL, SQLite) must not reach it."""
    for case in CASES:
        folder = tmp_path / case.name
        folder.mkdir()
        async with BACKENDS[backend](folder) as store:
            await run_in_process(case, store, folder)


# -- a real daemon ------------------------------------------------------------------------------


def raw_exchange(daemon: Daemon, head: bytes, body_chunks: Iterable[bytes] = ()) -> bytes:
    """Send a request head and body chunks on a fresh socket (stopping when the daemon has
    answered or closed), then read the answer up to its end; every step bounded by TIMEOUT."""
    with socket.create_connection((daemon.host, daemon.port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:  # the daemon answered and closed while we were still sending
            pass
        deadline = time.monotonic() + TIMEOUT
        answer = b""
        while time.monotonic() < deadline:
            try:
                got = sock.recv(65536)
            except ConnectionResetError:
                break
            answer += got
            if not got or _complete(answer):
                break
        return answer


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def parse_raw(answer: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, json.loads(body)


def assert_raw_problem(answer: bytes, status: int, slug: str) -> dict[str, Any]:
    assert answer, "the daemon closed the connection without an answer"
    got, headers, body = parse_raw(answer)
    assert got == status, answer[:500]
    assert headers["content-type"] == PROBLEM_JSON
    assert body["type"] == PROBLEM_BASE + slug
    return body


def test_hostile_requests_against_a_daemon(tmp_path: Path) -> None:
    with Daemon(ORDERS_YAML, tmp_path, env={"CATGAD_REDIS_PROJECTIONS": "false"}) as daemon:
        host = f"{daemon.host}:{daemon.port}".encode()
        with daemon.client(timeout=TIMEOUT) as client:
            for case in CASES:
                if case.succeeds or case.asgi_only:
                    continue
                content = case.chunks() if case.chunked else case.body
                resp = client.request(case.method, case.path, headers=case.headers, content=content)
                check_answer(case, resp)
                assert client.get(f"/streams/{STREAM}").status_code == 404, case.name

        # 2 MiB declared, none of it sent: answered at once, not after waiting for the body
        head = (
            b"POST /commands/CreateOrder HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        )
        assert_raw_problem(raw_exchange(daemon, head), 413, "payload-too-large")

        # chunked, no Content-Length, 2 MiB in all: refused once past the limit
        head = (
            b"POST /commands/CreateOrder HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (CHUNK, b"[" * CHUNK)
        chunks = iter([chunk] * 32 + [b"0\r\n\r\n"])
        assert_raw_problem(raw_exchange(daemon, head, chunks), 413, "payload-too-large")

        # a body that stalls: its connection waits, the daemon does not
        with socket.create_connection((daemon.host, daemon.port), timeout=TIMEOUT) as stalled:
            stalled.sendall(
                b"POST /commands/CreateOrder HTTP/1.1\r\nHost: " + host + b"\r\n"
                b"Content-Length: 100\r\n\r\n" + b'{"order_id":'
            )
            with daemon.client(timeout=TIMEOUT) as client:
                assert client.get("/healthz").status_code == 200
                assert client.get("/readyz").status_code == 200
        # ...and when it hangs up, that is a line in the log, not an error with a traceback
        eventually(
            lambda: "client disconnected before its request was read" in daemon.logs(),
            TIMEOUT,
            "the hang-up's log line",
        )

        with daemon.client(timeout=TIMEOUT) as client:
            assert client.get(f"/streams/{STREAM}").status_code == 404
            assert client.get("/readyz").status_code == 200
        assert daemon.running
        logs = daemon.logs()
        assert "Traceback" not in logs
        assert "unhandled error" not in logs
