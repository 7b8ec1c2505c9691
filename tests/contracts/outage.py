"""The outage contract: every server-backed event store and bus passes it, unchanged.

A server of the test's own (a real process) is killed while the store or bus
is in use, then started again on the same port with the same data:

- every call made while it is away fails with catgad.errors.Unavailable, and
  within `prompt` seconds (never a hang, never another error);
- nothing acknowledged is lost: every append that returned is stored after the
  restart, every message whose publish returned is delivered;
- the same store or bus object works again by itself (no reopen) within
  `recovery` seconds.

Subclass StoreOutageContract or BusOutageContract once per backend (as Test...)
and implement `server()`, a started server of the test's own that can be killed
and started again (tests/servers has one per server), and `make_store(url)` or
`make_bus(url, prefix)`, with timeouts short enough for `prompt`. The daemon's
side of an outage (503 problems over HTTP, /readyz) is tests/faults/test_outages.py.
"""

from __future__ import annotations

import abc
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, ClassVar, Protocol

import pytest

from catgad.bus.protocol import Bus
from catgad.envelope import Envelope
from catgad.errors import Unavailable
from catgad.store.protocol import AppendResult, Capability, EventStore
from tests.contracts.bus import Inbox, message, until
from tests.contracts.store import event, read_everything, same_result
from tests.support.waiting import eventually_async

WRITERS = 20  # appenders running through the outage


class Breakable(Protocol):
    """A server process of the test's own: killed (like a crash), then started again on the
    same port with the same data."""

    @property
    def url(self) -> str: ...

    def kill(self) -> None: ...

    def start(self) -> Any: ...


async def refused_promptly(what: str, call: Callable[[], Awaitable[object]], prompt: float) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await call()
    took = time.monotonic() - started
    assert took < prompt, f"{what} took {took:.1f}s to fail while the server was away"


class StoreOutageContract(abc.ABC):
    prompt: ClassVar[float] = 4.0  # seconds a call may take to fail while the server is away
    recovery: ClassVar[float] = 30.0  # seconds the store may take to work again after the restart

    @abc.abstractmethod
    def server(self) -> AbstractContextManager[Breakable]:
        """A started server of the test's own, stopped afterwards."""

    @abc.abstractmethod
    def make_store(self, url: str) -> AbstractAsyncContextManager[EventStore]:
        """An opened store on `url`, closed (and its data removed) afterwards."""

    async def test_a_crash_fails_calls_promptly_loses_nothing_acknowledged_and_recovers(
        self,
    ) -> None:
        with self.server() as server:
            async with self.make_store(server.url) as store:
                await store_outage(store, server.kill, server.start, self.prompt, self.recovery)


async def store_outage(
    store: EventStore,
    down: Callable[[], object],
    up: Callable[[], object],
    prompt: float,
    recovery: float,
) -> None:
    """Appends run from WRITERS tasks while `down()` takes the server away and `up()` brings
    it back; then the contract's three promises are checked."""
    acked: dict[str, AppendResult] = {}
    in_doubt: list[tuple[str, str, Envelope]] = []  # refused as Unavailable: landed or not
    failures: list[float] = []  # how long each refused append took
    running = True

    async def writer(w: int) -> None:
        i = 0
        while running:
            cid, given = f"w{w}-{i}", event(w=w, i=i)
            started = time.monotonic()
            try:
                acked[cid] = await store.append(
                    f"W{w}", [given], expected_version=None, command_id=cid
                )
            except Unavailable:
                failures.append(time.monotonic() - started)
                in_doubt.append((f"W{w}", cid, given))
                await asyncio.sleep(0.1)  # a client's pause before trying again
            i += 1

    async def works() -> bool:
        await store.ping()
        return True

    writers = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
    try:
        await eventually_async(lambda: len(acked) >= 50, 20, "50 acknowledged appends")
        await asyncio.to_thread(down)  # the writers keep going while the process dies
        for what, call in (
            ("ping", store.ping),
            ("append", lambda: store.append("S", [event()], expected_version=None,
                                            command_id="down")),
            ("read", lambda: store.read("W0")),
            ("read_all", store.read_all),
            ("stream_version", lambda: store.stream_version("W0")),
            ("find_command", lambda: store.find_command("w0-0")),
            ("load_snapshot", lambda: store.load_snapshot("W0")),
        ):  # fmt: skip
            await refused_promptly(what, call, prompt)
        await eventually_async(lambda: len(failures) >= WRITERS, prompt, "every writer refused")
        await asyncio.to_thread(up)
        await eventually_async(works, recovery, "the store to work again", retry_on=(Unavailable,))
        after = len(acked)
        await eventually_async(lambda: len(acked) >= after + 50, recovery, "appends after restart")
    finally:
        running = False
        await asyncio.gather(*writers)
    assert max(failures) < prompt, f"slowest refusals: {sorted(failures)[-3:]}"

    stored = {e.id: e for e in await read_everything(store)}
    for cid, result in acked.items():  # every acknowledged append survived
        assert result.events[0].id in stored, f"acknowledged {cid} was lost"
        found = await store.find_command(cid)
        assert found is not None and same_result(found, result), cid
    # an append refused mid-flight may or may not have landed: retrying it with its
    # command id settles it, exactly once
    for stream, cid, given in in_doubt:
        await store.append(stream, [given], expected_version=None, command_id=cid)
    everything = await read_everything(store)
    assert len({e.id for e in everything}) == len(everything) == len(acked) + len(in_doubt)
    positions = [e.position or 0 for e in everything]
    assert positions == sorted(set(positions)), "positions out of order"
    if store.capabilities & Capability.GAPLESS_GLOBAL_ORDER:
        assert positions == list(range(1, len(everything) + 1)), "a gap in the global order"
    for w in range(WRITERS):
        versions = [e.streamversion for e in await store.read(f"W{w}", limit=100_000)]
        assert versions == list(range(1, len(versions) + 1)), f"W{w}: {versions}"


class BusOutageContract(abc.ABC):
    prompt: ClassVar[float] = 6.0  # seconds a publish may take to fail while the broker is away
    recovery: ClassVar[float] = 40.0  # seconds the bus may take to work again after the restart
    # whether the broker keeps what it holds across a restart (Tansu's storage is memory:
    # there, messages are awaited before the crash, and only later ones are checked after)
    keeps_messages: ClassVar[bool] = True

    @abc.abstractmethod
    def server(self) -> AbstractContextManager[Breakable]:
        """A started broker of the test's own, stopped afterwards."""

    @abc.abstractmethod
    def make_bus(self, url: str, prefix: str) -> AbstractAsyncContextManager[Bus]:
        """An opened bus on `url` under topic `prefix`, closed afterwards."""

    async def test_a_crash_fails_publishes_promptly_loses_nothing_acknowledged_and_recovers(
        self,
    ) -> None:
        with self.server() as server:
            async with self.make_bus(server.url, f"outage{uuid.uuid4().hex[:8]}") as bus:
                inbox = Inbox()
                await bus.subscribe("t", "g", inbox)
                before = []
                for n in range(5):
                    await bus.publish("t", message("before", n), key="before")
                    before.append(n)
                if not self.keeps_messages:
                    await until(lambda: set(before) <= set(inbox.numbers("before")), inbox)
                await asyncio.to_thread(server.kill)
                started = time.monotonic()
                with pytest.raises(Unavailable):
                    for n in range(5, 1000):  # one of these must fail, and soon
                        await bus.publish("t", message("before", n), key="before")
                        before.append(n)
                took = time.monotonic() - started
                assert took < self.prompt, f"publishing took {took:.1f}s to fail"

                await asyncio.to_thread(server.start)

                async def publishes() -> bool:
                    await bus.publish("t", message("after", 0), key="after")
                    return True

                await eventually_async(
                    publishes, self.recovery, "the bus to publish again", retry_on=(Unavailable,)
                )
                for n in range(1, 5):
                    await bus.publish("t", message("after", n), key="after")
                # at least once: what was in hand at the crash may come again; consumers
                # deduplicate by event id
                await until(
                    lambda: (
                        set(range(5)) <= set(inbox.numbers("after"))
                        and set(before) <= set(inbox.numbers("before"))
                    ),
                    inbox,
                    timeout=self.recovery,
                )
