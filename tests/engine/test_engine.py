"""The command engine on the orders example: rules, idempotency, concurrency, snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from catgad.aggregates.rules import initial_state, replay
from catgad.config import load_config
from catgad.config.model import Config
from catgad.engine import CommandEngine
from catgad.errors import (
    ConcurrencyError,
    InvalidPayload,
    PreconditionFailed,
    UnknownCommand,
)
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
    from catgad.config.model import StoreConfig

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
    from catgad.config.model import StoreConfig

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
