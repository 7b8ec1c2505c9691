"""The outbox relay: stored events reach the bus at least once, in stream order, one relay at once.

Runtimes here share one SQLite file as daemons would; each has its own memory
bus (its process's) unless a test gives them one to watch a restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from catgad.bus.factory import open_bus, relay_settings
from catgad.bus.memory import MemoryBus
from catgad.bus.relay import RelaySettings
from catgad.bus.section import BusConfig
from catgad.envelope import Envelope
from catgad.errors import ConfigError, Unavailable
from catgad.runtime import Runtime
from catgad.store.section import StoreConfig
from catgad.store.sqlite import SQLiteStore
from tests.bus.outbox import (
    Recorder,
    assert_in_stream_order,
    orders_config,
    place_order,
    stored,
    until,
)
from tests.contracts.store import event

pytestmark = pytest.mark.sqlite

LEASE = "relay:orders"  # the orders example's service is named "orders"


async def subscribed(bus: MemoryBus, recorder: Recorder) -> MemoryBus:
    await bus.subscribe("events", "test", recorder)
    return bus


async def test_commands_reach_a_subscriber_once_each_in_stream_order(tmp_path: Path) -> None:
    recorder = Recorder()
    bus = await subscribed(MemoryBus(), recorder)
    async with Runtime.start(orders_config(tmp_path / "e.db"), bus=bus, relay=True) as rt:
        await asyncio.gather(*(place_order(rt, f"o{i}") for i in range(20)))
        events = await stored(rt.store)
        assert len(events) == 40
        await until(lambda: len(recorder.got) >= 40)
        await bus.join()
        assert len(recorder.got) == 40  # exactly once each: no restart, no duplicate
        assert_in_stream_order(recorder.got, events)
        assert all(e.subject and e.subject.startswith("Order-o") for e in recorder.got)
        relay = rt.relay
        assert relay is not None
        await until(lambda: relay.checkpoint == 40)
        assert await rt.store.load_checkpoint(LEASE) == 40  # type: ignore[attr-defined]
        assert await rt.store.lease_owner(LEASE) == relay.owner  # type: ignore[attr-defined]
        assert relay.lag == 0 and relay.published == 40
        status = relay.status()
        assert status["state"] == "active" and status["holder"] == relay.owner
        assert (status["checkpoint"], status["head"], status["error"]) == (40, 40, None)
        checks = await rt.check_ready()
        assert (checks["store"], checks["bus"], checks["relay"]) == ("ok", "ok", "active")
        metrics = rt.metrics.render().decode()
        assert "catgad_relay_active 1.0" in metrics
        assert "catgad_relay_checkpoint 40.0" in metrics
        assert "catgad_relay_lag_events 0.0" in metrics
        assert "catgad_relay_published_events_total 40.0" in metrics


async def test_with_no_group_on_a_memory_bus_nothing_is_read_and_a_late_group_gets_what_follows(
    tmp_path: Path,
) -> None:
    """A daemon on the memory bus has no subscriber: the relay moves its checkpoint on without
    reading the store (nothing could receive the events); a group that joins gets the rest."""
    bus = MemoryBus()
    config = orders_config(tmp_path / "e.db", poll_interval=60.0)  # no poll: only wake-ups
    async with Runtime.start(config, bus=bus, relay=True) as rt:
        relay = rt.relay
        assert relay is not None
        await until(lambda: relay.state == "active")
        reads = 0
        read_all = rt.store.read_all

        async def counted(*args: object, **kwargs: object) -> object:
            nonlocal reads
            reads += 1
            return await read_all(*args, **kwargs)  # type: ignore[arg-type]

        rt.store.read_all = counted  # type: ignore[method-assign]
        await asyncio.gather(*(place_order(rt, f"o{i}") for i in range(5)))
        await until(lambda: relay.checkpoint == 10)
        # at most the first turn's look at an empty log, were it still to come
        assert reads <= 1 and relay.published == 0 and relay.lag == 0
        assert await rt.store.load_checkpoint(LEASE) == 10  # type: ignore[attr-defined]

        recorder = Recorder()
        await subscribed(bus, recorder)
        await place_order(rt, "late")
        await until(lambda: len(recorder.got) == 2)
        await bus.join()
        assert [e.subject for e in recorder.got] == ["Order-late", "Order-late"]
        assert relay.checkpoint == 12 and relay.published == 2 and reads > 0


async def test_an_append_here_is_relayed_at_once_not_at_the_next_poll(tmp_path: Path) -> None:
    recorder = Recorder()
    bus = await subscribed(MemoryBus(), recorder)
    config = orders_config(tmp_path / "e.db", poll_interval=60.0)
    async with Runtime.start(config, bus=bus, relay=True) as rt:
        assert rt.relay is not None
        await until(lambda: rt.relay is not None and rt.relay.state == "active")
        started = time.monotonic()
        await place_order(rt, "o1")
        await until(lambda: len(recorder.got) == 2)
        assert time.monotonic() - started < 5  # far below the 60 s poll


async def test_appends_by_another_process_are_found_by_polling(tmp_path: Path) -> None:
    recorder = Recorder()
    bus = await subscribed(MemoryBus(), recorder)
    db = tmp_path / "e.db"
    async with Runtime.start(orders_config(db), bus=bus, relay=True):
        other = SQLiteStore(db)  # another process appending to the same file
        await other.open()
        try:
            await other.append("S-1", [event(n=1), event(n=2)], expected_version=0, command_id="a")
            await other.append("S-2", [event(n=1)], expected_version=0, command_id="b")
            await until(lambda: len(recorder.got) == 3)
            assert [(e.subject, e.streamversion) for e in recorder.got if e.subject == "S-1"] == [
                ("S-1", 1),
                ("S-1", 2),
            ]
        finally:
            await other.close()


async def test_a_killed_relay_resumes_from_its_checkpoint_repeating_only_the_unsaved_tail(
    tmp_path: Path,
) -> None:
    held_at = 18  # the subscriber stalls on this position: the batch holding it is not saved
    recorder = Recorder(hold=lambda e: e.position == held_at)
    bus = await subscribed(MemoryBus(), recorder)
    config = orders_config(tmp_path / "e.db", batch=5, lease_ttl=0.5)
    try:
        async with Runtime.start(config, bus=bus, relay=True) as first:
            for i in range(15):
                await place_order(first, f"o{i}")
            await asyncio.wait_for(recorder.holding.wait(), 10)
            relay = first.relay
            assert relay is not None
            saved = await first.store.load_checkpoint(LEASE)  # type: ignore[attr-defined]
            assert saved < held_at
            relay.abort()  # like kill -9: no checkpoint saved, lease not released
        recorder.release.set()

        async with Runtime.start(config, bus=bus, relay=True) as second:
            events = await stored(second.store)
            assert len(events) == 30
            # the lease of the dead relay must expire first; then all is relayed
            await until(lambda: second.relay is not None and second.relay.checkpoint == 30)
            await bus.join()
        assert_in_stream_order(recorder.got, events)
        counts = {i: recorder.ids().count(i) for i in recorder.distinct()}
        position = {e.id: e.position or 0 for e in events}
        repeated = sorted(position[i] for i, n in counts.items() if n > 1)
        assert max(counts.values()) <= 2
        assert all(p > saved for p in repeated), (saved, repeated)  # only the unsaved tail
        assert repeated, "the relay published past its checkpoint before it was killed"
    finally:
        recorder.release.set()
        await bus.close()


async def test_a_stopped_relay_saves_its_checkpoint_and_hands_over_at_once(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    bus = await subscribed(MemoryBus(), recorder)
    config = orders_config(tmp_path / "e.db", lease_ttl=30.0)  # takeover cannot be an expiry
    async with Runtime.start(config, bus=bus, relay=True) as first:
        for i in range(5):
            await place_order(first, f"o{i}")
        await until(lambda: len(recorder.got) == 10)
    check = SQLiteStore(tmp_path / "e.db")
    await check.open()
    try:
        assert await check.lease_owner(LEASE) is None
        assert await check.load_checkpoint(LEASE) == 10
    finally:
        await check.close()

    async with Runtime.start(config, bus=bus, relay=True) as second:
        await until(lambda: second.relay is not None and second.relay.state == "active", 5)
        await place_order(second, "o5")
        await until(lambda: len(recorder.got) == 12)
        await bus.join()
        events = await stored(second.store)
    assert recorder.ids() == list(dict.fromkeys(recorder.ids()))  # no duplicate at all
    assert_in_stream_order(recorder.got, events)


async def test_two_daemons_on_one_file_relay_one_at_a_time_and_hand_over_without_a_gap(
    tmp_path: Path,
) -> None:
    config = orders_config(tmp_path / "e.db", lease_ttl=3.0)
    got_a, got_b = Recorder(), Recorder()
    bus_a = await subscribed(MemoryBus(), got_a)
    bus_b = await subscribed(MemoryBus(), got_b)
    overlaps: list[tuple[str, str]] = []

    async with AsyncExitStack() as stack_b:
        stack_a = AsyncExitStack()
        a = await stack_a.enter_async_context(Runtime.start(config, bus=bus_a, relay=True))
        await until(lambda: a.relay is not None and a.relay.state == "active")
        b = await stack_b.enter_async_context(Runtime.start(config, bus=bus_b, relay=True))
        assert a.relay is not None and b.relay is not None
        relay_a, relay_b = a.relay, b.relay

        async def watch() -> None:
            publishing = ("active", "retrying")
            while True:
                if relay_a.state in publishing and relay_b.state in publishing:
                    overlaps.append((relay_a.state, relay_b.state))
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        try:
            await until(lambda: relay_b.state == "standby")
            for i in range(10):  # commands arrive at both daemons
                await place_order(a if i % 2 else b, f"o{i}")
            await until(lambda: len(got_a.got) == 20)
            assert relay_b.published == 0 and got_b.got == []
            assert (await b.check_ready())["relay"] == "standby"

            await stack_a.aclose()  # a stops: it releases the lease
            await until(lambda: relay_b.state == "active", 2.0)  # before the 3 s lease expires
            for i in range(10, 15):
                await place_order(b, f"o{i}")
            await until(lambda: len(got_b.got) == 10)
            events = await stored(b.store)
        finally:
            watcher.cancel()
    assert overlaps == []
    assert len(events) == 30
    assert set(got_a.ids()).isdisjoint(got_b.ids())  # a graceful handover repeats nothing
    assert_in_stream_order(got_a.got + got_b.got, events)
    positions = sorted(e.position or 0 for e in got_a.got + got_b.got)
    assert positions == list(range(1, 31))  # no gap


async def test_a_relay_that_loses_its_lease_stops_publishing(tmp_path: Path) -> None:
    recorder = Recorder()
    bus = await subscribed(MemoryBus(), recorder)
    db = tmp_path / "e.db"
    async with Runtime.start(orders_config(db, lease_ttl=0.6), bus=bus, relay=True) as rt:
        relay = rt.relay
        assert relay is not None
        await place_order(rt, "o1")
        await until(lambda: len(recorder.got) == 2)

        with sqlite3.connect(db) as raw:  # another daemon took the lease (as after a long stall)
            raw.execute(
                "UPDATE leases SET owner = 'thief',"
                " expires = (julianday('now') - 2440587.5) * 86400.0 + 60 WHERE name = ?",
                (LEASE,),
            )
        await until(lambda: relay.state == "standby")
        await place_order(rt, "o2")  # wakes the relay, which must not publish
        await asyncio.sleep(0.3)  # a negative: several polls' worth of nothing happening
        assert len(recorder.got) == 2
        assert await rt.store.lease_owner(LEASE) == "thief"  # type: ignore[attr-defined]

        with sqlite3.connect(db) as raw:
            raw.execute("DELETE FROM leases WHERE name = ?", (LEASE,))
        await until(lambda: len(recorder.got) == 4)
        assert_in_stream_order(recorder.got, await stored(rt.store))


class FlakyBus(MemoryBus):
    """A memory bus whose broker can be down: publish raises while `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = 0

    async def publish(self, topic: str, envelope: Envelope, *, key: str) -> None:
        if self.down:
            self.refused += 1
            raise Unavailable("bus", "connection refused")
        await super().publish(topic, envelope, key=key)


async def test_a_failing_bus_is_retried_without_skipping_or_reordering(tmp_path: Path) -> None:
    recorder = Recorder()
    bus = FlakyBus()
    await subscribed(bus, recorder)
    config = orders_config(tmp_path / "e.db", max_backoff=0.1)
    async with Runtime.start(config, bus=bus, relay=True) as rt:
        relay = rt.relay
        assert relay is not None
        bus.down = True
        for i in range(3):
            await place_order(rt, f"o{i}")
        await until(lambda: bus.refused >= 5)
        assert relay.state == "retrying" and recorder.got == []
        with pytest.raises(Unavailable) as down:
            await rt.check_ready()
        assert down.value.dependency == "bus (memory)"
        assert await rt.store.load_checkpoint(LEASE) == 0  # type: ignore[attr-defined]

        bus.down = False
        await until(lambda: len(recorder.got) == 6)
        await bus.join()
        assert len(recorder.got) == 6  # a refused publish delivered nothing; none was skipped
        assert_in_stream_order(recorder.got, await stored(rt.store))
        assert relay.state == "active" and relay.last_error is None
        assert (await rt.check_ready())["bus"] == "ok"
        assert "catgad_relay_publish_failures_total" in rt.metrics.render().decode()


async def test_stopping_does_not_wait_for_a_bus_that_is_down(tmp_path: Path) -> None:
    bus = FlakyBus()
    await subscribed(bus, Recorder())  # with nobody listening, nothing would be published
    bus.down = True
    config = orders_config(tmp_path / "e.db", max_backoff=5.0)
    async with Runtime.start(config, bus=bus, relay=True) as rt:
        await place_order(rt, "o1")
        await until(lambda: bus.refused >= 3)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    check = SQLiteStore(tmp_path / "e.db")
    await check.open()
    try:  # nothing was published, so nothing is marked done; the lease is free
        assert await check.load_checkpoint(LEASE) == 0
        assert await check.lease_owner(LEASE) is None
    finally:
        await check.close()


async def test_one_shot_runtimes_do_not_relay(tmp_path: Path) -> None:
    async with Runtime.start(orders_config(tmp_path / "e.db")) as rt:
        await place_order(rt, "o1")
        assert rt.relay is None
        checks = await rt.check_ready()
        assert checks["bus"] == "ok" and "relay" not in checks


async def test_a_memory_store_relays_too(tmp_path: Path) -> None:
    config = orders_config(tmp_path / "unused.db")
    config.store = StoreConfig(kind="memory")
    recorder = Recorder()
    bus = await subscribed(MemoryBus(), recorder)
    async with Runtime.start(config, bus=bus, relay=True) as rt:
        await place_order(rt, "o1")
        await until(lambda: len(recorder.got) == 2)
        await until(lambda: rt.relay is not None and rt.relay.checkpoint == 2)
        assert await rt.store.load_checkpoint(LEASE) == 2  # type: ignore[attr-defined]


# -- settings and the bus factory ----------------------------------------------------------


def test_relay_settings_come_from_bus_options() -> None:
    cfg = BusConfig(options={"relay": {"lease_ttl": 2, "batch": 50, "topic": "orders.events"}})
    settings = relay_settings(cfg)
    assert settings == RelaySettings(lease_ttl=2.0, batch=50, topic="orders.events")
    assert relay_settings(BusConfig()) == RelaySettings()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lease_tll": 2}, r"relay.lease_tll: unknown key \(topic, batch, lease_ttl"),
        ({"batch": 0}, "relay.batch: expected a positive integer, got 0"),
        ({"batch": 2.5}, "relay.batch: expected a positive integer, got 2.5"),
        ({"lease_ttl": "10s"}, "relay.lease_ttl: expected a positive number, got '10s'"),
        ({"poll_interval": True}, "relay.poll_interval: expected a positive number, got True"),
        ({"topic": ""}, "relay.topic: expected a non-empty string, got ''"),
    ],
)
def test_wrong_relay_settings_are_refused_clearly(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        relay_settings(BusConfig(options={"relay": options}))


def test_open_bus() -> None:
    assert isinstance(open_bus(BusConfig()), MemoryBus)
    assert isinstance(open_bus(BusConfig(options={"partitions": 4})), MemoryBus)
    with pytest.raises(ConfigError, match=r"bus\.options\.parts: not an option of the memory bus"):
        open_bus(BusConfig(options={"parts": 4}))
    with pytest.raises(ConfigError, match=r"bus\.options\.partitions: expected integer, got True"):
        open_bus(BusConfig(kind="nats", options={"partitions": True}))
    assert open_bus(BusConfig(kind="kafka")).name == "kafka"


async def test_a_standby_relay_stops_without_waiting_for_its_next_lease_attempt(
    tmp_path: Path,
) -> None:
    config = orders_config(tmp_path / "e.db", lease_ttl=30.0)  # attempts 10 s apart
    async with Runtime.start(config, bus=MemoryBus(), relay=True) as active:
        await until(lambda: active.relay is not None and active.relay.state == "active")
        async with Runtime.start(config, bus=MemoryBus(), relay=True) as standby:
            await until(lambda: standby.relay is not None and standby.relay.state == "standby")
            started = time.monotonic()
        assert time.monotonic() - started < 2
