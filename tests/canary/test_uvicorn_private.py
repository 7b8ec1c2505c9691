"""uvicorn's private parts that the hot command route writes its answer through
(catgad.http.direct: the httptools protocol's RequestResponseCycle and STATUS_LINE).

A real uvicorn server, on a real socket, with an app that answers through
`direct.answer`: should a release rename the cycle's state or change what a
complete response must do to it, these fail here (the answer not taken, a
keep-alive connection stuck, a close not honoured) rather than in a daemon."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from catgad.http import direct
from tests.support.waiting import eventually_async

taken: list[bool] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await receive()
    body = f"answer to {scope['path']}".encode()
    headers = [(b"content-length", str(len(body)).encode()), (b"x-test", b"yes")]
    took = direct.answer(send, 201, headers, body)
    taken.append(took)
    if not took:
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # as `catgad run` serves: httptools, no access log (with one, answers go through send)
    config = uvicorn.Config(
        app, http="httptools", lifespan="off", log_config=None, access_log=False
    )
    serving = uvicorn.Server(config)
    task = asyncio.create_task(serving.serve(sockets=[sock]))
    await eventually_async(lambda: serving.started, 10, "uvicorn started")
    taken.clear()
    try:
        yield port
    finally:
        serving.should_exit = True
        await task
        sock.close()


async def test_answers_go_out_whole_on_a_kept_alive_connection(server: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server}") as client:
        for n in range(3):
            answer = await client.post(f"/n{n}", content=b"{}")
            assert answer.status_code == 201
            assert answer.text == f"answer to /n{n}"
            assert answer.headers["x-test"] == "yes"
            assert "date" in answer.headers  # uvicorn's default headers, as its send writes
            assert answer.http_version == "HTTP/1.1"
    assert taken == [True, True, True]


async def test_pipelined_requests_are_answered_in_order(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    request = "POST /{} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}"
    writer.write("".join(request.format(f"p{n}") for n in range(3)).encode())
    await writer.drain()
    seen = b""
    while seen.count(b"answer to") < 3:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, f"closed after {seen!r}"
        seen += chunk
    assert [seen.find(f"answer to /p{n}".encode()) for n in range(3)] == sorted(
        seen.find(f"answer to /p{n}".encode()) for n in range(3)
    )
    assert seen.count(b"HTTP/1.1 201 Created\r\n") == 3
    writer.close()
    assert taken == [True, True, True]


async def test_an_http_1_0_request_is_answered_and_closed(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"POST /old HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 Created\r\n")
    assert b"\r\nconnection: close" in head
    assert body == b"answer to /old"
    writer.close()
    assert taken == [True]


async def test_with_uvicorns_access_log_writing_answers_go_through_send(
    server: int, caplog: pytest.LogCaptureFixture
) -> None:
    access = logging.getLogger("uvicorn.access")
    access.addHandler(caplog.handler)  # the server's config left it none, and not propagating
    # catgad's configure_logging, run earlier in this process by another test, disables it
    disabled, access.disabled = access.disabled, False
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server}") as client:
                answer = await client.post("/logged", content=b"{}")
    finally:
        access.removeHandler(caplog.handler)
        access.disabled = disabled
    assert (answer.status_code, answer.text) == (201, "answer to /logged")
    assert taken == [False]  # the access log line is uvicorn's send's to write
    assert any("/logged" in r.getMessage() for r in caplog.records if r.name == "uvicorn.access")


def test_anything_but_uvicorns_own_send_takes_the_asgi_way() -> None:
    async def send(message: object) -> None:
        raise AssertionError("not to be called")

    assert direct.answer(send, 201, [], b"") is False
