"""Helpers for the relay and dead-letter tests: the orders config on a SQLite file, a recording
subscriber, and waiting for conditions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catgad.app.load import load_config
from catgad.bus.section import BusConfig
from catgad.envelope import Envelope
from catgad.model import Config
from catgad.runtime import Runtime
from catgad.store.protocol import EventStore
from catgad.store.section import StoreConfig
from tests.helpers.daemon import ORDERS_YAML
from tests.support.waiting import eventually_async

WAIT = 10.0  # seconds any awaited condition may take
POLL = 0.01  # seconds between looks at a condition
ITEMS = [{"sku": "tea", "qty": 2, "price": 450}]  # total 900


def orders_config(db: Path, **relay: Any) -> Config:
    """The orders example on the SQLite file `db`, memory bus, relay options as given."""
    config = load_config(ORDERS_YAML)
    config.store = StoreConfig(kind="sqlite", path=str(db), synchronous="normal")
    options = {"lease_ttl": 0.6, "poll_interval": 0.05, **relay}
    config.bus = BusConfig(kind="memory", options={"relay": options})
    return config


async def place_order(runtime: Runtime, order_id: str) -> None:
    """CreateOrder then PayOrder: two events on stream Order-<order_id>."""
    body = {"order_id": order_id, "customer": "ada", "items": ITEMS}
    await runtime.execute("CreateOrder", body)
    await runtime.execute("PayOrder", {"order_id": order_id, "amount": 900})


async def stored(store: EventStore) -> list[Envelope]:
    """Every event of the store, in global order."""
    out: list[Envelope] = []
    after = 0
    while batch := await store.read_all(after=after):
        out.extend(batch)
        after = batch[-1].position or 0
    return out


async def until(condition: Callable[[], bool], within: float = WAIT, what: str = "") -> None:
    """Wait until `condition()` holds; fail after `within` seconds.

    It looks every POLL seconds: the conditions read state that several tasks
    change (relays, leases, subscribers) and that no single event announces.
    """
    await eventually_async(condition, within, what or "the condition", interval=POLL)


class Recorder:
    """A bus subscriber that keeps what it was given, and can hold one message back."""

    def __init__(self, hold: Callable[[Envelope], bool] | None = None) -> None:
        self.got: list[Envelope] = []
        self.hold = hold
        self.holding = asyncio.Event()  # set while the held message waits
        self.release = asyncio.Event()

    async def __call__(self, envelope: Envelope) -> None:
        if self.hold is not None and self.hold(envelope) and not self.release.is_set():
            self.holding.set()
            await self.release.wait()
        self.got.append(envelope)

    def ids(self) -> list[str]:
        return [e.id for e in self.got]

    def distinct(self) -> set[str]:
        return set(self.ids())


def first_seen_per_stream(got: list[Envelope]) -> dict[str, list[int]]:
    """Each stream's versions in the order they were first delivered (duplicates dropped)."""
    seen: set[str] = set()
    out: dict[str, list[int]] = {}
    for e in got:
        if e.id not in seen:
            seen.add(e.id)
            out.setdefault(e.subject or "", []).append(e.streamversion or 0)
    return out


def assert_in_stream_order(got: list[Envelope], events: list[Envelope]) -> None:
    """Every stored event was delivered, and each stream's first deliveries are in version order."""
    assert {e.id for e in got} == {e.id for e in events}
    for stream, versions in first_seen_per_stream(got).items():
        assert versions == list(range(1, len(versions) + 1)), stream
