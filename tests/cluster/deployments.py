"""Deployments the cluster and fault tests run daemons on: a store and a bus, isolated per test.

Each deployment gives the environment its config under tests/cluster/configs/
reads (`${VAR}` for URLs and prefixes, fresh for every test), a way to open the
same store and bus in the test process (to read back what was stored and to
consume the events topic with a group of the test's own), and a clean-up that
removes what the test left on the shared servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats

from catgad.bus.kafka import KafkaBus
from catgad.bus.nats import NatsBus
from catgad.bus.protocol import Bus
from catgad.bus.topics import token
from catgad.envelope import Envelope
from catgad.store.nats import NATSStore
from catgad.store.postgres import PostgresStore
from catgad.store.protocol import EventStore
from catgad.store.redis import RedisStore
from tests.servers import nats as nats_servers
from tests.servers import postgres as postgres_servers
from tests.servers import redis as redis_servers

CONFIGS = Path(__file__).parent / "configs"
PARTITIONS = 8  # as in the configs: the test's consumer must see the same partitions


@dataclass
class Deployment:
    name: str
    config: Path
    env: dict[str, str]
    make_store: Callable[[], EventStore]  # unopened
    make_bus: Callable[[], Bus]  # unopened
    cleanups: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    async def stored(self, streams: list[str]) -> dict[str, list[Envelope]]:
        """Every event of `streams`, read from the store itself."""
        store = self.make_store()
        await store.open()
        try:
            return {s: await store.read(s) for s in streams}
        finally:
            await store.close()

    async def clean_up(self) -> None:
        """Remove the test's keys, schema and streams from the servers (best effort)."""
        for cleanup in self.cleanups:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await cleanup()


def unique(kind: str) -> str:
    return f"catgadtest{kind}{uuid.uuid4().hex[:10]}"


def redis_nats(redis_url: str, nats_url: str) -> Deployment:
    prefix, bus_prefix = f"{unique('r')}:", unique("n")
    return Deployment(
        name="redis-nats",
        config=CONFIGS / "redis-nats.yaml",
        env={
            "CATGAD_REDIS_URL": redis_url,
            "CATGAD_TEST_PREFIX": prefix,
            "CATGAD_NATS_URL": nats_url,
            "CATGAD_BUS_PREFIX": bus_prefix,
        },
        make_store=lambda: RedisStore(redis_url, prefix=prefix),
        make_bus=lambda: NatsBus(nats_url, prefix=bus_prefix, partitions=PARTITIONS),
        cleanups=[
            lambda: redis_servers.wipe(redis_url, prefix),
            lambda: delete_nats_streams(nats_url, bus_prefix),
        ],
    )


def nats_nats(nats_url: str) -> Deployment:
    """The NATS store and the NATS bus on one server, each with names of its own."""
    stream, subjects, bus_prefix = unique("S"), unique("s"), unique("n")
    unopened = NATSStore(nats_url, stream=stream, subject_prefix=subjects)  # for its names
    return Deployment(
        name="nats-nats",
        config=CONFIGS / "nats-nats.yaml",
        env={
            "CATGAD_NATS_URL": nats_url,
            "CATGAD_TEST_STREAM": stream,
            "CATGAD_TEST_SUBJECTS": subjects,
            "CATGAD_BUS_PREFIX": bus_prefix,
        },
        make_store=lambda: NATSStore(nats_url, stream=stream, subject_prefix=subjects),
        make_bus=lambda: NatsBus(nats_url, prefix=bus_prefix, partitions=PARTITIONS),
        cleanups=[
            lambda: nats_servers.delete_streams(nats_url, unopened),
            lambda: delete_nats_streams(nats_url, bus_prefix),
        ],
    )


def postgres_nats(postgres_url: str, nats_url: str) -> Deployment:
    schema, bus_prefix = unique("p"), unique("n")
    return Deployment(
        name="postgres-nats",
        config=CONFIGS / "postgres-nats.yaml",
        env={
            "CATGAD_POSTGRES_URL": postgres_url,
            "CATGAD_TEST_SCHEMA": schema,
            "CATGAD_NATS_URL": nats_url,
            "CATGAD_BUS_PREFIX": bus_prefix,
        },
        make_store=lambda: PostgresStore(postgres_url, schema=schema, pool_max=2),
        make_bus=lambda: NatsBus(nats_url, prefix=bus_prefix, partitions=PARTITIONS),
        cleanups=[
            lambda: drop_schema(postgres_url, schema),
            lambda: delete_nats_streams(nats_url, bus_prefix),
        ],
    )


def postgres_kafka(postgres_url: str, kafka_url: str) -> Deployment:
    schema, bus_prefix = unique("p"), unique("k")
    return Deployment(
        name="postgres-kafka",
        config=CONFIGS / "postgres-kafka.yaml",
        env={
            "CATGAD_POSTGRES_URL": postgres_url,
            "CATGAD_TEST_SCHEMA": schema,
            "CATGAD_KAFKA_URL": kafka_url,
            "CATGAD_BUS_PREFIX": bus_prefix,
        },
        make_store=lambda: PostgresStore(postgres_url, schema=schema, pool_max=2),
        make_bus=lambda: KafkaBus(
            kafka_url, prefix=bus_prefix, partitions=PARTITIONS, session_timeout=6
        ),
        cleanups=[lambda: drop_schema(postgres_url, schema)],  # the broker is the session's own
    )


async def drop_schema(url: str, schema: str) -> None:
    postgres_servers.drop_schema(url, schema)


async def delete_nats_streams(url: str, prefix: str) -> None:
    """Remove every JetStream stream of a bus prefix (their names start with its token)."""
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(token(prefix) + "__"):
                with contextlib.suppress(Exception):
                    await js.delete_stream(info.config.name)
    finally:
        await nc.close()
