"""The in-process bus passes the bus contract, and keeps its own promises (retention, join)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from catgad.bus.memory import MemoryBus, MemoryHub
from catgad.bus.protocol import Bus
from tests.contracts.bus import BusContract, Inbox, message, until


class TestMemoryBus(BusContract):
    """Buses made in one namespace share one hub, like daemons sharing a broker."""

    quiet = 0.05
    hubs: ClassVar[dict[str, MemoryHub]] = {}

    @contextlib.asynccontextmanager
    async def namespace(self) -> AsyncIterator[str]:
        ns = uuid.uuid4().hex
        self.hubs[ns] = MemoryHub(partitions=4)
        try:
            yield ns
        finally:
            del self.hubs[ns]

    @contextlib.asynccontextmanager
    async def make_bus(self, namespace: str, **options: Any) -> AsyncIterator[Bus]:
        options.setdefault("redelivery_delay", 0.01)
        bus = MemoryBus(self.hubs[namespace], **options)
        await bus.open()
        try:
            yield bus
        finally:
            await bus.close()

    async def inject_raw(self, bus: Bus, topic: str, key: str, raw: bytes) -> None:
        assert isinstance(bus, MemoryBus)
        await bus.publish_raw(topic, raw, key=key)


async def test_a_partition_keeps_at_most_max_retained_messages() -> None:
    bus = MemoryBus(partitions=1, max_retained=10)
    for n in range(25):
        await bus.publish("t", message("k", n), key="k")
    inbox = Inbox()
    await bus.subscribe("t", "late", inbox)
    await until(lambda: len(inbox.got) >= 10, inbox)
    await bus.join()
    assert inbox.numbers("k") == list(range(15, 25))
    await bus.close()


async def test_handled_messages_are_let_go() -> None:
    bus = MemoryBus(partitions=1)
    inbox = Inbox()
    await bus.subscribe("t", "g", inbox)
    for n in range(600):
        await bus.publish("t", message("k", n), key="k")
    await bus.join()
    assert len(bus.hub.topics["t"].logs[0].entries) < 600
    assert inbox.numbers("k") == list(range(600))
    await bus.close()


async def test_join_waits_for_every_group() -> None:
    bus = MemoryBus()
    first, second = Inbox(), Inbox()
    await bus.subscribe("t", "a", first)
    await bus.subscribe("t", "b", second)
    for n in range(50):
        await bus.publish("t", message(f"k{n % 7}", n), key=f"k{n % 7}")
    await bus.join()
    assert len(first.got) == len(second.got) == 50
    await bus.close()
