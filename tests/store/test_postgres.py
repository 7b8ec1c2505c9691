"""The PostgreSQL store passes the store contract, keeps the global order, and survives faults.

Every test works in a schema of its own on the shared server (dropped after);
the outage contract starts a private server it can kill. Without a server the
tests skip, or fail when CI=true.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from typing import Any

import psycopg
import pytest

from catgad.envelope import Envelope
from catgad.errors import ConcurrencyError, StoreError, Unavailable
from catgad.store.postgres import SCHEMA_VERSION, PostgresStore
from catgad.store.protocol import AppendResult, EventStore, Snapshot
from tests.contracts.outage import Breakable, StoreOutageContract, store_outage
from tests.contracts.store import EventStoreContract, event, read_everything, same_result
from tests.servers.postgres import PrivateServer, postgres_store, schema_on_shared_server
from tests.support.ports import free_port

pytestmark = pytest.mark.postgres

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


class TestPostgresStore(EventStoreContract):
    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return postgres_store()


class TestPostgresStoreSmallBatchesTwoWriters(EventStoreContract):
    """Several batches in flight in one daemon, taking turns at the head lock."""

    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return postgres_store(writers=2, max_batch=3)


@asynccontextmanager
async def opened(url: str, schema: str, **options: Any) -> AsyncIterator[PostgresStore]:
    """A store on an existing (or new) schema, closed but not dropped afterwards."""
    options.setdefault("pool_max", 4)
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


def tagged(url: str, name: str) -> str:
    """The URL with an application_name, so a test finds its own sessions on the shared server."""
    return f"{url}?application_name={name}"


async def until_blocked(conn: Conn, application_name: str) -> None:
    """Wait until a session of that name waits for a lock."""
    deadline = time.monotonic() + 10
    while True:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.application_name = %s",
            (application_name,),
        )
        row = await cur.fetchone()
        if row is not None and row[0] > 0:
            return
        assert time.monotonic() < deadline, f"{application_name} never waited for a lock"
        await asyncio.sleep(0.01)


class Tailer:
    """A reader that keeps a checkpoint, as a projection does: what it skips, it never sees."""

    def __init__(self, read: Callable[[int], Awaitable[list[int]]]) -> None:
        self.read = read
        self.checkpoint = 0
        self.seen: list[int] = []

    async def poll(self) -> None:
        positions = await self.read(self.checkpoint)
        self.seen.extend(positions)
        if positions:
            self.checkpoint = positions[-1]


# -- the global order ---------------------------------------------------------------


async def test_a_reader_never_passes_a_write_still_in_flight() -> None:
    """Writer A holds positions 2-3 uncommitted (blocked by a lock we hold); writer B, in
    another store (another daemon), appends meanwhile. A tailing reader polls in between:
    it must not see B's event before A's, nor move its checkpoint past A's positions."""
    with schema_on_shared_server() as (url, schema):
        a_name, b_name = f"{schema}-a", f"{schema}-b"
        async with (
            opened(tagged(url, a_name), schema) as a,
            opened(tagged(url, b_name), schema) as b,
            raw(url) as holder,
        ):
            await a.append("Seed", [event()], expected_version=0, command_id="seed")
            reader = Tailer(lambda after: _positions(b, after))
            await reader.poll()
            assert reader.seen == [1]

            await holder.execute("BEGIN")
            await holder.execute(f'LOCK TABLE "{schema}".commands IN SHARE MODE')
            first = asyncio.create_task(
                a.append("A", [event(), event()], expected_version=0, command_id="a")
            )
            await until_blocked(holder, a_name)  # A inserted its events, waits to record "a"
            second = asyncio.create_task(
                b.append("B", [event()], expected_version=0, command_id="b")
            )
            await until_blocked(holder, b_name)  # B waits for A's head lock
            for _ in range(20):
                await reader.poll()
                await asyncio.sleep(0.01)
            assert reader.seen == [1] and reader.checkpoint == 1
            assert not first.done() and not second.done()

            await holder.execute("ROLLBACK")  # lets A commit, then B
            appended_a, appended_b = await first, await second
            while len(reader.seen) < 4:
                await reader.poll()
            assert reader.seen == [1, 2, 3, 4]
            assert [e.position for e in appended_a.events] == [2, 3]
            assert [e.position for e in appended_b.events] == [4]


async def test_the_reader_harness_catches_a_bigserial_skip() -> None:
    """The same tailing reader over a naive bigserial table loses an event: the test has teeth."""
    with schema_on_shared_server() as (url, schema):
        async with raw(url) as setup, raw(url) as slow, raw(url) as fast:
            table = f'"{schema}".naive'
            await setup.execute(f'CREATE SCHEMA "{schema}"')
            await setup.execute(f"CREATE TABLE {table} (position bigserial PRIMARY KEY, n int)")

            async def read(after: int) -> list[int]:
                cur = await setup.execute(
                    f"SELECT position FROM {table} WHERE position > %s ORDER BY position", (after,)
                )
                return [row[0] for row in await cur.fetchall()]

            reader = Tailer(read)
            await slow.execute("BEGIN")
            await slow.execute(f"INSERT INTO {table} (n) VALUES (1)")  # takes position 1
            await fast.execute(f"INSERT INTO {table} (n) VALUES (2)")  # takes 2, commits first
            await reader.poll()
            await slow.execute("COMMIT")
            await reader.poll()
            assert reader.seen == [2]  # position 1 committed behind the checkpoint: lost


async def _positions(store: EventStore, after: int) -> list[int]:
    return [e.position or 0 for e in await store.read_all(after=after)]


# -- writers that do not follow the protocol, and bounded waits -------------------------


async def test_a_unique_violation_from_a_foreign_writer_is_a_version_conflict() -> None:
    """A row written behind the head lock's back clashes on UNIQUE (stream, version); the
    store decides again on fresh reads and reports the conflict, not a psycopg error."""
    with schema_on_shared_server() as (url, schema):
        async with opened(tagged(url, schema), schema) as store, raw(url) as foreign:
            await foreign.execute("BEGIN")
            await foreign.execute(
                f'INSERT INTO "{schema}".events (position, stream, version, id, type, time,'
                " command_id, body) VALUES (1000, 'S', 1, 'foreign', 'T', 't', 'x', '{}')"
            )
            task = asyncio.create_task(
                store.append("S", [event()], expected_version=0, command_id="c")
            )
            await until_blocked(foreign, schema)  # our INSERT waits on UNIQUE (stream, version)
            await foreign.execute("COMMIT")
            with pytest.raises(ConcurrencyError) as caught:
                await task
            assert (caught.value.expected, caught.value.actual) == (0, 1)
            assert await store.find_command("c") is None
            again = await store.append("S", [event()], expected_version=None, command_id="c")
            assert again.version == 2


async def test_a_held_head_lock_times_out_as_unavailable_and_readers_go_on() -> None:
    with schema_on_shared_server() as (url, schema):
        async with opened(url, schema, statement_timeout=0.5) as store, raw(url) as holder:
            await store.append("S", [event()], expected_version=0, command_id="a")
            await holder.execute("BEGIN")
            await holder.execute(f'SELECT 1 FROM "{schema}".head FOR UPDATE')
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await store.append("S", [event()], expected_version=1, command_id="b")
            assert time.monotonic() - started < 3
            assert len(await store.read_all()) == 1  # readers never wait for the lock
            await holder.execute("ROLLBACK")
            result = await store.append("S", [event()], expected_version=1, command_id="b")
            assert result.version == 2 and [e.position for e in result.events] == [2]


async def test_connections_killed_under_the_store_are_replaced() -> None:
    """The server ends every connection of the store (as on a restart): nothing fails."""
    with schema_on_shared_server() as (url, schema):
        # tagged, so we end only our own sessions
        async with opened(tagged(url, schema), schema, pool_min=3) as store, raw(url) as admin:
            await store.append("S", [event()], expected_version=0, command_id="a")
            for _ in range(2):
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (schema,),
                )
                await asyncio.sleep(0.1)
                assert len(await store.read("S")) >= 1  # a read on a dead connection is repeated
                version = await store.stream_version("S")
                await store.append(
                    "S", [event()], expected_version=version, command_id=f"v{version}"
                )
            assert await store.stream_version("S") == 3


# -- lifecycle, schema and limits ---------------------------------------------------------


async def test_events_commands_and_snapshots_outlive_the_store() -> None:
    with schema_on_shared_server() as (url, schema):
        async with opened(url, schema) as first:
            appended = await first.append(
                "S", [event(), event()], expected_version=0, command_id="c"
            )
            first_snapshot = Snapshot("S", 2, {"n": 1e20, "s": "nul \u0000 ok"})
            await first.save_snapshot(first_snapshot)
        async with opened(url, schema) as again:
            assert await again.stream_version("S") == 2
            repeat = await again.append("S", [event()], expected_version=0, command_id="c")
            assert repeat.duplicate and same_result(repeat, appended)
            assert await again.load_snapshot("S") == first_snapshot
            await again.close()
            await again.open()  # a store can be reopened
            await again.append("S", [event()], expected_version=2, command_id="d")
            assert len(await read_everything(again)) == 3


async def test_bodies_are_json_the_server_can_query() -> None:
    with schema_on_shared_server() as (url, schema):
        async with opened(url, schema) as store, raw(url) as sql:
            await store.append("S", [event(amount=12)], expected_version=0, command_id="c")
            cur = await sql.execute(
                f"SELECT body->>'subject', (body->'data'->>'amount')::int FROM \"{schema}\".events"
            )
            assert await cur.fetchall() == [("S", 12)]


async def test_a_newer_schema_is_refused() -> None:
    with schema_on_shared_server() as (url, schema):
        async with opened(url, schema), raw(url) as sql:
            await sql.execute(
                f'UPDATE "{schema}".head SET schema_version = %s', (SCHEMA_VERSION + 1,)
            )
        with pytest.raises(StoreError, match="has version"):
            await PostgresStore(url, schema=schema).open()


async def test_no_server_is_unavailable_promptly() -> None:
    store = PostgresStore(
        f"postgresql://127.0.0.1:{free_port()}/x", connect_timeout=2, pool_timeout=1
    )
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await store.open()
    assert time.monotonic() - started < 5
    with pytest.raises(Unavailable):
        await store.ping()


def test_bad_schema_names_and_urls_are_refused() -> None:
    for schema in ("", "1abc", 'x"; DROP', "a" * 64):
        with pytest.raises(StoreError):
            PostgresStore(schema=schema)
    with pytest.raises(StoreError):
        PostgresStore("postgresql://[::1")


async def test_nul_characters_are_refused_alone() -> None:
    async with postgres_store() as store:
        bad = store.append("a\x00b", [event()], expected_version=None, command_id="x")
        good = store.append("S", [event()], expected_version=0, command_id="y")
        outcomes = await asyncio.gather(bad, good, return_exceptions=True)
        assert isinstance(outcomes[0], StoreError) and isinstance(outcomes[1], AppendResult)
        with pytest.raises(StoreError):
            await store.append("S", [Envelope(type="T\x00", data={})], expected_version=None,
                               command_id="z")  # fmt: skip
        assert len(await read_everything(store)) == 1


async def test_close_lets_queued_appends_finish() -> None:
    with schema_on_shared_server() as (url, schema):
        async with opened(url, schema) as store:
            tasks = [
                asyncio.create_task(
                    store.append(f"S{i}", [event()], expected_version=0, command_id=f"c{i}")
                )
                for i in range(50)
            ]
            await asyncio.sleep(0)  # they are queued
            await store.close()
            results = await asyncio.gather(*tasks)
            assert all(r.version == 1 for r in results)
        async with opened(url, schema) as again:
            assert len(await read_everything(again)) == 50


# -- a real crash of the server ----------------------------------------------------------


@pytest.mark.slow
class TestPostgresOutage(StoreOutageContract):
    """A private postmaster: crash() is an immediate shutdown (recovery from the WAL)."""

    def server(self) -> AbstractContextManager[Breakable]:
        return PrivateServer()

    @asynccontextmanager
    async def make_store(self, url: str) -> AsyncIterator[EventStore]:
        store = PostgresStore(url, connect_timeout=2, pool_timeout=1,
                              statement_timeout=2, reconnect_timeout=1)  # fmt: skip
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    async def test_a_fast_shutdown_is_an_outage_like_a_crash(self) -> None:
        """SIGINT: clients are disconnected and a checkpoint written, then the same promises."""
        with PrivateServer() as server:
            async with self.make_store(server.url) as store:
                await store_outage(store, server.stop, server.start, self.prompt, self.recovery)
