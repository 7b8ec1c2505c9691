"""Webhook and plugin projections: each event told once it is delivered, at least once overall,
signed (webhook), dead-lettered when refused, retried (never skipped) while the handler is down."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook

from catgad.errors import HandlerUnavailable
from catgad.model import Config
from catgad.projections.manager import ProjectionManager
from catgad.projections.targets.handler import HandlerTarget
from catgad.projections.targets.plugin import PluginDelivery
from catgad.store.memory import MemoryStore
from tests.projections.conftest import BASE
from tests.projections.helpers import FAST, caught_up, emit

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A real HTTP server on a free port: records what it is sent, answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.answers: list[int] = []  # statuses to answer, in order; then 204
        self.trickle: float | None = None  # seconds between the bytes of a 204, not recorded
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                Webhook(SECRET).verify(body, headers)  # a bad signature raises: no answer
                if receiver.trickle is not None:
                    self._trickle(receiver.trickle)
                    return
                status = receiver.answers.pop(0) if receiver.answers else 204
                if status < 300:
                    receiver.received.append((headers, orjson.loads(body)))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def _trickle(self, every: float) -> None:
                # no single read waits long; the whole answer takes about 2 s
                self.close_connection = True
                for byte in b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n":
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up: as it should
                        return
                    time.sleep(every)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def webhook_config(write_config: Callable[[str], Config], url: str, timeout: float = 2) -> Config:
    return write_config(
        BASE
        + f"""
handlers:
  hook:
    kind: webhook
    url: {url}
    secret: {SECRET}
    timeout: {timeout:g}
    retries: 1
    backoff: {{initial: 0.01, max: 0.02}}
    circuit_breaker: {{failures: 5, reset_after: 0.2}}
projections:
  told:
    events: [Added, Removed]
    handler: hook
    retries: 0
"""
    )


async def test_webhook_gets_each_event_signed_with_its_id(
    write_config: Callable[[str], Config], store: MemoryStore, receiver: Receiver
) -> None:
    manager = ProjectionManager(webhook_config(write_config, receiver.url), store, settings=FAST)
    await manager.start()
    try:
        await emit(store, "Added", "a", by=1)
        await emit(store, "Renamed", "a", name="skipped: not listed")
        receiver.answers = [503]  # once down: retried by the delivery, same webhook-id
        await emit(store, "Removed", "a")
        await caught_up(manager.runner("told"), store)
        stored = await store.read_all()
        assert [body["event"]["id"] for _, body in receiver.received] == [
            stored[0].id,
            stored[2].id,
        ]
        assert [h["webhook-id"] for h, _ in receiver.received] == [stored[0].id, stored[2].id]
        _, body = receiver.received[0]
        assert body["projection"] == "told" and body["position"] == 1
        assert body["event"]["type"] == "Added" and body["event"]["data"] == {"cid": "a", "by": 1}
        assert await store.load_checkpoint("projection:told") == 3
    finally:
        await manager.stop()


async def test_webhook_refusal_is_dead_lettered_and_down_is_waited_for(
    write_config: Callable[[str], Config], store: MemoryStore, receiver: Receiver
) -> None:
    manager = ProjectionManager(webhook_config(write_config, receiver.url), store, settings=FAST)
    await manager.start()
    try:
        receiver.answers = [422]
        await emit(store, "Added", "refused", by=1)
        await emit(store, "Added", "b", by=2)
        await caught_up(manager.runner("told"), store)
        assert [body["event"]["data"]["cid"] for _, body in receiver.received] == ["b"]
        status = await manager.status("told", detail=True)
        assert status["dead_letters"]["count"] == 1
        assert "422" in status["dead_letters"]["items"][0]["reason"]
        # down for longer than the delivery's retries: the runner waits, skips nothing
        receiver.answers = [500] * 6
        await emit(store, "Added", "c", by=3)
        await caught_up(manager.runner("told"), store)
        assert [body["event"]["data"]["cid"] for _, body in receiver.received] == ["b", "c"]
        # a rebuild delivers everything again (receivers deduplicate by webhook-id)
        assert await manager.rebuild("told")
        await caught_up(manager.runner("told"), store)
        cids = [body["event"]["data"]["cid"] for _, body in receiver.received]
        assert cids == ["b", "c", "refused", "b", "c"]
    finally:
        await manager.stop()


async def test_webhook_timeout_bounds_the_whole_attempt(
    write_config: Callable[[str], Config], store: MemoryStore, receiver: Receiver
) -> None:
    """An answer trickled a byte at a time passes any per-read timeout, but the attempt as a
    whole takes longer than `timeout`: it is cut, the event waits (nothing skipped), and is
    delivered once the handler answers in time."""
    config = webhook_config(write_config, receiver.url, timeout=0.5)
    manager = ProjectionManager(config, store, settings=FAST)
    receiver.trickle = 0.05
    await manager.start()
    try:
        await emit(store, "Added", "slow", by=1)
        runner = manager.runner("told")
        runner.notify()
        async with asyncio.timeout(15):
            while "no answer within 0.5s" not in (runner.last_error or ""):
                runner.stepped.clear()
                await runner.stepped.wait()
        assert not await store.load_checkpoint("projection:told")
        receiver.trickle = None
        await caught_up(runner, store)
        assert [body["event"]["data"]["cid"] for _, body in receiver.received] == ["slow"]
    finally:
        await manager.stop()


async def test_plugin_projection(write_config: Callable[[str], Config], store: MemoryStore) -> None:
    config = write_config(
        BASE
        + """
handlers:
  plug: {kind: plugin, entry_point: not-installed}
projections:
  told:
    events: [Added]
    handler: plug
    retries: 1
"""
    )
    seen: list[dict[str, Any]] = []
    down = [2]  # unavailable twice, then up

    async def plugin(event: dict[str, Any]) -> None:
        if event["data"]["by"] == 13:
            raise ValueError("unlucky")
        if down[0]:
            down[0] -= 1
            raise HandlerUnavailable("plug", "warming up")
        seen.append(event)

    manager = ProjectionManager(config, store, settings=FAST)
    await manager.start(run=False)
    runner = manager.runner("told")
    assert isinstance(runner.target, HandlerTarget)
    runner.target.delivery = PluginDelivery(config.handlers["plug"], plugin)
    runner.start()
    try:
        await emit(store, "Added", "a", by=1)
        await emit(store, "Added", "b", by=13)
        await emit(store, "Added", "c", by=2)
        await caught_up(runner, store)
        assert [(e["data"]["cid"], e["position"], e["projection"]) for e in seen] == [
            ("a", 1, "told"), ("c", 3, "told"),
        ]  # fmt: skip
        (letter,) = (await manager.status("told", detail=True))["dead_letters"]["items"]
        assert "ValueError: unlucky" in letter["reason"] and letter["attempts"] == 2
    finally:
        await manager.stop()


async def test_a_plugin_that_cannot_be_loaded_keeps_the_projection_waiting(
    write_config: Callable[[str], Config], store: MemoryStore
) -> None:
    config = write_config(
        BASE + "handlers:\n  plug: {kind: plugin, entry_point: not-installed}\n"
        "projections:\n  told: {events: [Added], handler: plug}\n"
    )
    manager = ProjectionManager(config, store, settings=FAST)
    await manager.start()
    try:
        await emit(store, "Added", "a", by=1)
        runner = manager.runner("told")
        async with asyncio.timeout(5):
            while not runner.retrying:
                runner.stepped.clear()
                await runner.stepped.wait()
        status = await manager.status("told")
        assert "no entry point 'not-installed'" in status["last_error"]
    finally:
        await manager.stop()
