"""The command engine on the orders example: rules, idempotency, concurrency, snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from catgad.aggregates.rules import initial_state, replay
from catgad.app.load import load_config
from catgad.engine import CommandEngine
from catgad.errors import (
    ConcurrencyError,
    InvalidPayload,
    PreconditionFailed,
    UnknownCommand,
)
from catgad.model import Config
from catgad.store.factory import open_store
from catgad.store.memory import MemoryStore

EXAMPLE = Path(__file__).parents[2] / "config" / "examples" / "orders.yaml"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(EXAMPLE)


@pytest.fixture
async def engine(config: Config) -> AsyncIterator[CommandEngine]:
    store = MemoryStore()
    await store.open()
    yield CommandEngine(config, store)
    await store.close()


def create(order_id: str, price: int = 1250, qty: int = 2) -> dict[str, object]:
    return {
        "order_id": order_id,
        "customer": "alice",
        "items": [{"sku": "book", "qty": qty, "price": price}],
    }


async def test_create_then_pay_computes_state(engine: CommandEngine) -> None:
    created = await engine.execute("CreateOrder", create("o1"))
    assert created.created and created.version == 1 and created.stream == "Order-o1"
    assert [e.type for e in created.events] == ["OrderCreated"]
    event = created.events[0]
    assert event.subject == "Order-o1" and event.streamversion == 1
    assert event.causationid == created.command_id
    assert event.dataschemaversion == 1
    paid = await engine.execute("PayOrder", {"order_id": "o1", "amount": 2500})
    assert paid.version == 2 and not paid.created
    _, loaded = await engine.aggregate_state("Order", "o1")
    assert loaded.state["status"] == "paid" and loaded.state["total"] == 2500


async def test_precondition_names_rule_and_message(engine: CommandEngine) -> None:
    await engine.execute("CreateOrder", create("o1"))
    with pytest.raises(PreconditionFailed) as caught:
        await engine.execute("PayOrder", {"order_id": "o1", "amount": 1})
    assert caught.value.message == "amount must equal the order total"
    assert caught.value.rule == "data.amount == state.total"
    assert caught.value.status == 422
    assert await engine.store.stream_version("Order-o1") == 1


async def test_invalid_payload_lists_fields(engine: CommandEngine) -> None:
    with pytest.raises(InvalidPayload) as caught:
        await engine.execute("CreateOrder", {"order_id": "o1", "items": [{"sku": "x", "qty": 0}]})
    pointers = {e.pointer for e in caught.value.errors}
    assert {"/customer", "/items/0/qty", "/items/0/price"} <= pointers


async def test_unknown_command(engine: CommandEngine) -> None:
    with pytest.raises(UnknownCommand):
        await engine.execute("FlyOrder", {"order_id": "o1"})


async def test_retry_with_same_id_returns_first_result(engine: CommandEngine) -> None:
    first = await engine.execute("CreateOrder", create("o1"), command_id="k-1")
    # the state now rejects a second CreateOrder, but a retry gets the first result back
    again = await engine.execute("CreateOrder", create("o1"), command_id="k-1")
    assert again.duplicate and again.version == first.version
    assert [e.id for e in again.events] == [e.id for e in first.events]
    assert await engine.store.stream_version("Order-o1") == 1


async def test_expected_version_mismatch_is_conflict(engine: CommandEngine) -> None:
    await engine.execute("CreateOrder", create("o1"))
    with pytest.raises(ConcurrencyError) as caught:
        await engine.execute("PayOrder", {"order_id": "o1", "amount": 2500}, expected_version=7)
    assert (caught.value.expected, caught.value.actual) == (7, 1)
    ok = await engine.execute("PayOrder", {"order_id": "o1", "amount": 2500}, expected_version=1)
    assert ok.version == 2


async def test_concurrent_commands_on_one_stream_all_land(engine: CommandEngine) -> None:
    await engine.execute("CreateOrder", create("o1"))
    # 30 concurrent cancels: the first succeeds, the rest meet a cancelled order
    results = await asyncio.gather(
        *(engine.execute("CancelOrder", {"order_id": "o1", "reason": f"r{i}"}) for i in range(30)),
        return_exceptions=True,
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, PreconditionFailed)]
    assert len(accepted) == 1 and len(refused) == 29
    assert await engine.store.stream_version("Order-o1") == 2


async def test_two_engines_on_one_sqlite_file_never_lose_an_update(
    config: Config, tmp_path: Path
) -> None:
    """Two engines (as two processes would) share one file; stale caches must not win."""
    from catgad.store.section import StoreConfig

    stores = [open_store(StoreConfig(kind="sqlite", path=str(tmp_path / "s.db"))) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        engines = [CommandEngine(config, store) for store in stores]
        await engines[0].execute("CreateOrder", create("o1"))
        await engines[1].aggregate_state("Order", "o1")  # warm engine 1's cache
        await engines[0].execute("CancelOrder", {"order_id": "o1", "reason": "first"})
        # engine 1's cached state says "created"; the append must notice and re-decide
        with pytest.raises(PreconditionFailed):
            await engines[1].execute("PayOrder", {"order_id": "o1", "amount": 2500})
        events = await stores[0].read("Order-o1")
        assert [e.type for e in events] == ["OrderCreated", "OrderCancelled"]
    finally:
        for store in stores:
            await store.close()


async def test_an_uncached_stream_guessed_new_is_decided_again_on_the_stored_state(
    config: Config, tmp_path: Path
) -> None:
    """An engine decides a stream it has not cached as new without reading it; when the
    stream exists after all, the append's version check or the refusal sends it back to the
    stored state, so every answer is the one a reading engine would give."""
    from catgad.store.section import StoreConfig

    path = str(tmp_path / "s.db")
    first = open_store(StoreConfig(kind="sqlite", path=path))
    await first.open()
    try:
        await CommandEngine(config, first).execute("CreateOrder", create("o1"))
        fresh = CommandEngine(config, first)  # as a restarted daemon: nothing cached
        with pytest.raises(PreconditionFailed, match="order already exists"):
            await fresh.execute("CreateOrder", create("o1"))  # the guess passed version == 0
        paid = await CommandEngine(config, first).execute(
            "PayOrder", {"order_id": "o1", "amount": 2500}
        )  # refused on the guess (version > 0), then decided on the stored state
        assert paid.version == 2
        with pytest.raises(ConcurrencyError):  # If-Match 0 on a stream at 2: no retry
            await CommandEngine(config, first).execute(
                "CreateOrder", create("o1"), expected_version=0
            )
        shipped = await CommandEngine(config, first).execute(
            "ShipOrder", {"order_id": "o1", "tracking": "T1"}, expected_version=2
        )
        assert shipped.version == 3
        events = await first.read("Order-o1")
        assert [e.type for e in events] == ["OrderCreated", "OrderPaid", "OrderShipped"]
    finally:
        await first.close()


COUNTER = """
catgad: 1
service: {name: counters}
store: memory
aggregates:
  Counter:
    id: counter_id
    initial: {total: 0, count: 0}
    snapshot: {every: 5}
    on:
      Added:
        set:
          total: state.total + data.amount
          count: state.count + 1
commands:
  Add:
    aggregate: Counter
    schema:
      type: object
      required: [counter_id, amount]
      properties:
        counter_id: {type: string}
        amount: {type: integer}
    emit:
      - event: Added
        data: {counter_id: data.counter_id, amount: data.amount}
events:
  Added:
    schema:
      type: object
      required: [counter_id, amount]
      properties:
        counter_id: {type: string}
        amount: {type: integer}
"""


@pytest.mark.parametrize("adds", [4, 5, 23, 51])
async def test_snapshot_state_equals_full_replay(tmp_path: Path, adds: int) -> None:
    """State loaded through snapshots (every 5 events) equals a replay of every event."""
    from catgad.store.section import StoreConfig

    path = tmp_path / "counter.yaml"
    path.write_text(COUNTER)
    config = load_config(path)
    aggregate = config.aggregates["Counter"]
    store = open_store(StoreConfig(kind="sqlite", path=str(tmp_path / "snap.db")))
    await store.open()
    try:
        engine = CommandEngine(config, store)
        for i in range(adds):
            await engine.execute("Add", {"counter_id": "c1", "amount": i})
        snapshot = await store.load_snapshot("Counter-c1")
        if adds >= 5:
            assert snapshot is not None and snapshot.version == adds - adds % 5
        else:
            assert snapshot is None
        fresh = CommandEngine(config, store)  # empty cache: loads snapshot + tail
        stream, loaded = await fresh.aggregate_state("Counter", "c1")
        full = replay(aggregate, initial_state(aggregate), await store.read(stream))
        assert loaded.state == full == {"total": sum(range(adds)), "count": adds}
        assert loaded.version == adds
    finally:
        await store.close()


async def test_a_snapshot_taken_under_other_rules_is_ignored(tmp_path: Path) -> None:
    """Users edit the rules and restart: a snapshot folded by the old rules must not be read
    as the state, or the state would differ from a replay under the new ones."""
    from catgad.store.protocol import Snapshot
    from catgad.store.section import StoreConfig

    old_path, new_path = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old_path.write_text(COUNTER)
    doubled = "total: state.total + data.amount * 2"
    assert "total: state.total + data.amount" in COUNTER
    new_path.write_text(COUNTER.replace("total: state.total + data.amount", doubled))
    old, new = load_config(old_path), load_config(new_path)
    store = open_store(StoreConfig(kind="sqlite", path=str(tmp_path / "snap.db")))
    await store.open()
    try:
        engine = CommandEngine(old, store)
        for i in range(12):
            await engine.execute("Add", {"counter_id": "c1", "amount": i})
        taken = await store.load_snapshot("Counter-c1")
        assert taken is not None and taken.version == 10

        restarted = CommandEngine(new, store)  # the edited config, an empty cache
        _, loaded = await restarted.aggregate_state("Counter", "c1")
        assert loaded.state == {"total": 2 * sum(range(12)), "count": 12}

        await restarted.execute("Add", {"counter_id": "c1", "amount": 100})
        for i in range(2):
            await restarted.execute("Add", {"counter_id": "c1", "amount": i})
        retaken = await store.load_snapshot("Counter-c1")
        assert retaken is not None and retaken.version == 15
        _, again = await CommandEngine(new, store).aggregate_state("Counter", "c1")
        assert again.state == {"total": 2 * (sum(range(12)) + 100 + 0 + 1), "count": 15}

        # a snapshot without the rules' digest (as stored before it had one) is ignored too
        await store.save_snapshot(Snapshot("Counter-c1", 16, {"total": -1, "count": -1}))
        await restarted.execute("Add", {"counter_id": "c1", "amount": 5})
        _, last = await CommandEngine(new, store).aggregate_state("Counter", "c1")
        assert last.state == {"total": again.state["total"] + 10, "count": 16}
    finally:
        await store.close()


# -- per-stream locks ----------------------------------------------------------------------------


def test_event_ids_derive_from_command_and_index_and_sort_with_the_command() -> None:
    import time
    import uuid

    from catgad.envelope import new_id
    from catgad.ids import EVENT_NS, derived_index, event_id

    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    command = uuid.UUID(made)
    assert (command.version, command.variant) == (7, uuid.RFC_4122)
    assert before <= int.from_bytes(command.bytes[:6], "big") <= after
    for command_id in ("cmd-1", "0b8f6c1e-2d4a-4f5e-9a57-1c1b7a6b0e52", "é/ü", "", made):
        for index in (0, 1, 12):
            derived = uuid.UUID(event_id(command_id, index))
            assert derived == uuid.UUID(event_id(command_id, index))  # the same on a retry
            assert (derived.version, derived.variant) == (8, uuid.RFC_4122)
            hashed = uuid.uuid5(EVENT_NS, f"{command_id}/{index}").bytes
            # the hash's bits but for the version; the first 48 the command's time if it has one
            assert derived.bytes[9:] == hashed[9:] and derived.bytes[7] == hashed[7]
            assert derived.bytes[:6] == (command.bytes[:6] if command_id == made else hashed[:6])
            assert derived_index(str(derived), command_id, 20) == index
            assert derived_index(str(derived), command_id + "x", 20) is None
            # ids derived before time-ordered ones (uuid5) are still known as derived
            legacy = str(uuid.uuid5(EVENT_NS, f"{command_id}/{index}"))
            assert derived_index(legacy, command_id, 20) == index
            assert derived_index(legacy, command_id + "x", 20) is None
    assert derived_index("not-a-uuid", "cmd-1", 20) is None
    assert derived_index(str(uuid.uuid4()), "cmd-1", 20) is None
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids[0][:13] <= ids[-1][:13]  # time first: later ids never sort before earlier


async def test_stream_locks_run_one_at_a_time_in_arrival_order() -> None:
    from catgad.engine.commands import _StreamLocks

    locks = _StreamLocks()
    order: list[str] = []
    running = 0

    async def command(name: str) -> None:
        nonlocal running
        waiters = locks.try_take("s")
        if waiters is not None:
            await locks.wait("s", waiters)
        try:
            running += 1
            assert running == 1
            order.append(name)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        finally:
            running -= 1
            locks.release("s")

    await asyncio.gather(*(command(f"c{i}") for i in range(6)))
    assert order == [f"c{i}" for i in range(6)]
    assert len(locks) == 0


def _two_waiters(locks: Any, ran: list[str]) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    """Tasks "first" and "second", each waiting for stream "s", noting in `ran` when it runs."""

    async def waiter(name: str) -> None:
        waiters = locks.try_take("s")
        assert waiters is not None
        await locks.wait("s", waiters)
        ran.append(name)
        locks.release("s")

    return asyncio.create_task(waiter("first")), asyncio.create_task(waiter("second"))


async def test_stream_lock_waiter_cancelled_while_waiting_is_skipped() -> None:
    from catgad.engine.commands import _StreamLocks

    locks = _StreamLocks()
    assert locks.try_take("s") is None  # held by this test
    ran: list[str] = []
    first, second = _two_waiters(locks, ran)
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    locks.release("s")
    await second
    assert first.cancelled()
    assert ran == ["second"]
    assert len(locks) == 0


async def test_stream_lock_handed_to_a_cancelled_waiter_passes_on() -> None:
    """A waiter handed the stream and cancelled before it ran gives it to the next one."""
    from catgad.engine.commands import _StreamLocks

    locks = _StreamLocks()
    assert locks.try_take("s") is None  # held by this test
    ran: list[str] = []
    first, second = _two_waiters(locks, ran)
    await asyncio.sleep(0)
    locks.release("s")  # hands over to first ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.gather(first, second, return_exceptions=True)
    assert first.cancelled()
    assert ran == ["second"]
    assert len(locks) == 0


async def test_cancelled_command_releases_its_stream(engine: CommandEngine) -> None:
    await engine.execute("CreateOrder", create("o-cancel"))
    slow = asyncio.Event()
    original = engine.store.append

    async def append(*args: object, **kwargs: object) -> object:
        await slow.wait()
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    engine.store.append = append  # type: ignore[method-assign]
    stuck = asyncio.create_task(
        engine.execute("PayOrder", {"order_id": "o-cancel", "amount": 2500})
    )
    queued = asyncio.create_task(
        engine.execute("PayOrder", {"order_id": "o-cancel", "amount": 2500})
    )
    await asyncio.sleep(0.01)
    stuck.cancel()
    await asyncio.sleep(0)
    slow.set()
    result = await queued
    assert stuck.cancelled()
    assert result.version == 2
    assert len(engine._locks) == 0
