"""The PostgreSQL store passes the coordination contract, across two store objects on one schema.

Each test works in a schema of its own on the shared server (dropped after);
the peer is a second PostgresStore with its own pool on that schema. The
outage test starts a private server it can kill. Without a server the tests
skip, or fail when CI=true.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
import pytest

from catgad.errors import StoreError, Unavailable
from catgad.store.postgres import PostgresStore
from catgad.store.protocol import Coordination
from tests.contracts.coordination import CoordinationContract
from tests.contracts.store import event
from tests.servers.postgres import PrivateServer, postgres_store, schema_on_shared_server
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.postgres

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


@asynccontextmanager
async def opened(url: str, schema: str, **options: Any) -> AsyncIterator[PostgresStore]:
    """A store on an existing (or new) schema, closed but not dropped afterwards."""
    options.setdefault("pool_max", 4)  # the shared server's connections are shared by all
    store = PostgresStore(url, schema=schema, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[Conn]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def _coordinating(**options: Any) -> AsyncIterator[Coordination]:
    async with postgres_store(**options) as store:
        yield store


@asynccontextmanager
async def _peer(store: Coordination) -> AsyncIterator[Coordination]:
    assert isinstance(store, PostgresStore)
    async with opened(store.url, store.schema) as peer:
        yield peer


class TestPostgresCoordination(CoordinationContract):
    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return _coordinating()

    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        return _peer(store)


class TestPostgresCoordinationOneConnection(CoordinationContract):
    """Concurrent calls of one daemon queue for its only pooled connection."""

    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return _coordinating(pool_min=1, pool_max=2, writers=1)

    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        return _peer(store)


async def test_leases_and_checkpoints_outlive_the_store_in_plain_tables() -> None:
    with schema_on_shared_server() as (url, schema):
        async with opened(url, schema) as first:
            await first.append("S", [event()], expected_version=0, command_id="c")
            assert await first.acquire_lease("relay:s", "a", 60)
            await first.save_checkpoint("relay:s", 1)
        # closing releases nothing, as a crash would not
        async with opened(url, schema) as again:
            assert await again.lease_owner("relay:s") == "a"
            assert await again.load_checkpoint("relay:s") == 1
        async with raw(url) as sql:  # tables an operator can read; expiry by the server's clock
            cur = await sql.execute(
                "SELECT owner, expires - clock_timestamp() BETWEEN interval '50 s'"
                f" AND interval '60 s' FROM \"{schema}\".leases WHERE name = 'relay:s'"
            )
            assert await cur.fetchall() == [("a", True)]
            cur = await sql.execute(f'SELECT name, position FROM "{schema}".checkpoints')
            assert await cur.fetchall() == [("relay:s", 1)]


async def test_a_renewal_counts_its_ttl_from_now() -> None:
    async with postgres_store() as store:
        assert await store.acquire_lease("relay:s", "a", 60)
        assert await store.acquire_lease("relay:s", "a", 0.2)  # a shorter renewal shortens it

        async def vacant() -> bool:
            return await store.lease_owner("relay:s") is None

        await eventually_async(vacant, 5, "the shortened lease to lapse", interval=0.01)


async def test_a_schema_from_before_coordination_gains_its_tables() -> None:
    with schema_on_shared_server() as (url, schema):
        async with opened(url, schema) as store:
            await store.append("S", [event()], expected_version=0, command_id="c")
        async with raw(url) as sql:
            await sql.execute(f'DROP TABLE "{schema}".leases, "{schema}".checkpoints')
        async with opened(url, schema) as store:
            assert await store.stream_version("S") == 1
            assert await store.acquire_lease("relay:s", "a", 60)
            await store.save_checkpoint("relay:s", 1)
            assert await store.load_checkpoint("relay:s") == 1


async def test_errors_are_ours_not_psycopgs() -> None:
    async with postgres_store() as store:
        with pytest.raises(StoreError):
            await store.acquire_lease("relay:\x00", "a", 30)  # text cannot hold NUL
        with pytest.raises(StoreError):
            await store.save_checkpoint("relay:s", 2**63)  # beyond bigint
        with pytest.raises(StoreError):
            await store.acquire_lease("relay:s", "a", float("nan"))
        assert await store.acquire_lease("relay:s", "a", 30)  # the pool is still fine
        await store.close()
        with pytest.raises(Unavailable):
            await store.lease_owner("relay:s")
        with pytest.raises(Unavailable):
            await store.save_checkpoint("relay:s", 1)


async def test_a_held_row_lock_times_out_as_unavailable() -> None:
    with schema_on_shared_server() as (url, schema):
        async with opened(url, schema, statement_timeout=0.5) as store, raw(url) as holder:
            assert await store.acquire_lease("relay:s", "a", 30)
            await holder.execute("BEGIN")
            await holder.execute(f'SELECT 1 FROM "{schema}".leases FOR UPDATE')
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await store.acquire_lease("relay:s", "a", 30)
            assert time.monotonic() - started < 3
            assert await store.lease_owner("relay:s") == "a"  # readers do not wait for it
            await holder.execute("ROLLBACK")
            assert await store.acquire_lease("relay:s", "a", 30)


async def test_connections_killed_under_the_store_are_replaced() -> None:
    with schema_on_shared_server() as (url, schema):
        tagged = f"{url}?application_name={schema}"  # so we end only our own sessions
        async with opened(tagged, schema, pool_min=3) as store, raw(url) as admin:
            assert await store.acquire_lease("relay:s", "a", 30)
            for i in range(2):
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (schema,),
                )
                await asyncio.sleep(0.1)
                assert await store.acquire_lease("relay:s", "a", 30)
                await store.save_checkpoint("relay:s", i + 1)
            assert await store.load_checkpoint("relay:s") == 2


@pytest.mark.slow
async def test_a_server_going_down_is_unavailable_promptly_and_leases_survive() -> None:
    with PrivateServer() as server:
        store = PostgresStore(server.url, connect_timeout=2, pool_timeout=1,
                              statement_timeout=2, reconnect_timeout=1)  # fmt: skip
        await store.open()
        try:
            assert await store.acquire_lease("relay:s", "a", 60)
            await store.save_checkpoint("relay:s", 7)
            server.crash()
            calls = (
                lambda: store.acquire_lease("relay:s", "a", 60),
                lambda: store.lease_owner("relay:s"),
                lambda: store.release_lease("relay:s", "a"),
                lambda: store.load_checkpoint("relay:s"),
                lambda: store.save_checkpoint("relay:s", 8),
                lambda: store.reset_checkpoint("relay:s"),
            )
            for call in calls:
                started = time.monotonic()
                with pytest.raises(Unavailable):
                    await call()
                assert time.monotonic() - started < 4, "a call hung while the server was down"
            server.start()
            deadline = time.monotonic() + 20
            while True:  # the same store object works again: no reopen
                try:
                    owner = await store.lease_owner("relay:s")
                    break
                except Unavailable:
                    assert time.monotonic() < deadline, "the store did not reconnect"
                    await asyncio.sleep(0.1)
            assert owner == "a"
            assert await store.acquire_lease("relay:s", "a", 60)
            assert await store.load_checkpoint("relay:s") == 7
        finally:
            await store.close()
