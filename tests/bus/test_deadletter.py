"""Dead letters: poison messages are set aside in `$deadletter-<consumer>` with why; work goes on.

The memory bus delivers; a real SQLite store keeps the dead letters.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from catgad.bus.deadletter import (
    DEADLETTER_TYPE,
    Poison,
    RetryingConsumer,
    consume_with_retries,
    dead_letter,
    deadletter_stream,
)
from catgad.bus.memory import MemoryBus
from catgad.envelope import Envelope
from catgad.errors import Unavailable
from catgad.runtime import Runtime
from catgad.store.sqlite import SQLiteStore
from tests.bus.outbox import orders_config, place_order, until

pytestmark = pytest.mark.sqlite


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "e.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus()
    try:
        yield bus
    finally:
        await bus.close()


def message(n: int, key: str = "Order-o1") -> Envelope:
    return Envelope(type="Counted", data={"n": n}, subject=key, source="tests")


class Handler:
    """Fails on the numbers in `failing` (`times` times each, or always), keeps the rest."""

    def __init__(self, failing: set[int], times: int | None = None, poison: bool = False) -> None:
        self.failing = failing
        self.times = times
        self.poison = poison
        self.attempts: Counter[int] = Counter()
        self.handled: list[int] = []

    async def __call__(self, envelope: Envelope) -> None:
        n = envelope.data["n"]
        self.attempts[n] += 1
        if n in self.failing and (self.times is None or self.attempts[n] <= self.times):
            if self.poison:
                raise Poison(f"no such account {n}")
            raise ValueError(f"cannot bill {n}")
        self.handled.append(n)


async def test_a_poison_message_is_dead_lettered_after_its_retries_and_the_consumer_goes_on(
    store: SQLiteStore, bus: MemoryBus
) -> None:
    handler = Handler(failing={2})
    consumer = consume_with_retries(handler, 2, 0.001, store=store, consumer="billing")
    await bus.subscribe("events", "billing", consumer)
    sent = [message(n) for n in (1, 2, 3)]  # one key: 3 waits until 2 is dealt with
    for m in sent:
        await bus.publish("events", m, key="Order-o1")
    await until(lambda: handler.handled == [1, 3])
    assert handler.attempts[2] == 3  # the first try and 2 retries

    letters = await store.read(deadletter_stream("billing"))
    assert len(letters) == 1
    letter = letters[0]
    assert letter.type == DEADLETTER_TYPE == "catgad.deadletter"
    assert letter.subject == "$deadletter-billing"
    assert letter.causationid == sent[1].id
    assert letter.data["consumer"] == "billing"
    assert letter.data["reason"] == "ValueError: cannot bill 2"
    assert letter.data["attempts"] == 3
    assert isinstance(letter.data["failed_at"], str)
    assert letter.data["envelope"] == sent[1].to_dict()
    assert (consumer.handled, consumer.dead_lettered) == (2, 1)


async def test_a_passing_failure_is_retried_and_not_dead_lettered(
    store: SQLiteStore, bus: MemoryBus
) -> None:
    handler = Handler(failing={1}, times=2)
    consumer = consume_with_retries(handler, 2, 0.001, store=store, consumer="billing")
    await bus.subscribe("events", "billing", consumer)
    await bus.publish("events", message(1), key="k")
    await until(lambda: handler.handled == [1])
    assert handler.attempts[1] == 3
    assert await store.read(deadletter_stream("billing")) == []


async def test_poison_is_dead_lettered_without_retries(store: SQLiteStore) -> None:
    handler = Handler(failing={1}, poison=True)
    consumer = consume_with_retries(handler, 5, 0.001, store=store, consumer="billing")
    await consumer(message(1))
    assert handler.attempts[1] == 1
    (letter,) = await store.read(deadletter_stream("billing"))
    assert letter.data["reason"] == "no such account 1"
    assert letter.data["attempts"] == 1


async def test_a_redelivered_message_is_handled_once(store: SQLiteStore, bus: MemoryBus) -> None:
    handler = Handler(failing=set())
    consumer = consume_with_retries(handler, store=store, consumer="billing")
    await bus.subscribe("events", "billing", consumer)
    again = message(1)
    for m in (again, message(2), again):  # at least once: a relay restart repeats its tail
        await bus.publish("events", m, key="k")
    await until(lambda: consumer.duplicates == 1)
    assert handler.handled == [1, 2]


async def test_redelivering_a_dead_lettered_message_stores_it_once(store: SQLiteStore) -> None:
    poison = message(7)
    first = await dead_letter(store, "billing", poison, "bad", 4)
    second = await dead_letter(store, "billing", poison, "bad again", 4)
    assert not first.duplicate and second.duplicate
    assert len(await store.read(deadletter_stream("billing"))) == 1
    # another consumer failing on the same message keeps its own letter
    await dead_letter(store, "shipping", poison, "bad", 1)
    assert len(await store.read(deadletter_stream("shipping"))) == 1


async def test_bytes_that_are_not_a_cloudevent_are_dead_lettered_raw(
    store: SQLiteStore, bus: MemoryBus
) -> None:
    handler = Handler(failing=set())
    consumer = consume_with_retries(handler, store=store, consumer="billing")
    await bus.subscribe("events", "billing", consumer, on_undecodable=consumer.on_undecodable)
    await bus.publish_raw("events", b'{"hello": "world"}', key="k")
    await bus.publish("events", message(1), key="k")
    await until(lambda: handler.handled == [1])  # it went on

    await consumer.on_undecodable(b"\xff\xfe not utf-8", "not JSON")
    text, binary = await store.read(deadletter_stream("billing"))
    assert text.data["reason"].startswith("undecodable: ")
    assert text.data["raw_text"] == '{"hello": "world"}'
    assert base64.b64decode(text.data["raw_base64"]) == b'{"hello": "world"}'
    assert "raw_text" not in binary.data
    assert base64.b64decode(binary.data["raw_base64"]) == b"\xff\xfe not utf-8"
    assert binary.data["reason"] == "undecodable: not JSON"
    assert "envelope" not in binary.data and binary.causationid is None


async def test_a_dead_letter_the_store_refuses_leaves_the_message_unacknowledged(
    store: SQLiteStore,
) -> None:
    handler = Handler(failing={1}, poison=True)
    consumer = RetryingConsumer(handler, store=store, consumer="billing")
    poison = message(1)
    await store.close()
    with pytest.raises(Unavailable):  # the bus keeps the message and delivers it again
        await consumer(poison)
    await store.open()
    await consumer(poison)
    assert len(await store.read(deadletter_stream("billing"))) == 1
    assert consumer.duplicates == 0


async def test_the_set_of_recent_ids_is_bounded(store: SQLiteStore) -> None:
    handler = Handler(failing=set())
    consumer = RetryingConsumer(handler, store=store, consumer="c", remember=2)
    a, b, c = message(1), message(2), message(3)
    for m in (a, b, a, c, a):  # a is forgotten once b and c are newer
        await consumer(m)
    assert handler.handled == [1, 2, 3, 1]
    assert consumer.duplicates == 1


async def test_through_the_relay_dead_letters_are_not_fed_back_to_the_consumer(
    tmp_path: Path, bus: MemoryBus
) -> None:
    seen: list[str] = []

    async def ship(envelope: Envelope) -> None:
        seen.append(envelope.type)
        if envelope.type == "OrderPaid" and envelope.data["order_id"] == "o1":
            raise RuntimeError("carrier refuses o1")

    config = orders_config(tmp_path / "e.db")
    async with Runtime.start(config, bus=bus, relay=True) as rt:
        consumer = consume_with_retries(ship, 1, 0.001, store=rt.store, consumer="shipping")
        await bus.subscribe("events", "shipping", consumer)
        await place_order(rt, "o1")
        await place_order(rt, "o2")
        relay = rt.relay
        assert relay is not None

        # 4 order events and 1 dead letter, all relayed and handled
        await until(lambda: relay.checkpoint == 5 and consumer.dead_lettered == 1)
        await bus.join()
        letters = await rt.store.read("$deadletter-shipping")
        assert [letter.data["envelope"]["type"] for letter in letters] == ["OrderPaid"]
        assert letters[0].data["reason"] == "RuntimeError: carrier refuses o1"
        assert DEADLETTER_TYPE not in seen
        assert Counter(seen) == Counter(
            {"OrderCreated": 2, "OrderPaid": 3}
        )  # o1's OrderPaid tried twice, then o2's events went on
        assert consumer.handled == 3
