"""The SQLite store passes the event store contract in both durability modes, and keeps its file."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from catgad.errors import ConcurrencyError, StoreError, Unavailable
from catgad.store.protocol import AppendResult, EventStore
from catgad.store.sqlite import SCHEMA_VERSION, SQLiteStore
from tests.contracts.store import EventStoreContract, event, read_everything, same_result
from tests.store.backends import sqlite_store

pytestmark = pytest.mark.sqlite


class TestSQLiteStoreFull(EventStoreContract):
    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return sqlite_store("full")


class TestSQLiteStoreNormal(EventStoreContract):
    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return sqlite_store("normal")


async def test_events_commands_and_snapshots_outlive_the_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = SQLiteStore(path)
    await first.open()
    appended = await first.append("S", [event(), event()], expected_version=0, command_id="c")
    await first.close()

    again = SQLiteStore(path)
    await again.open()
    try:
        assert await again.stream_version("S") == 2
        repeat = await again.append("S", [event()], expected_version=0, command_id="c")
        assert repeat.duplicate and same_result(repeat, appended)
        assert len(await read_everything(again)) == 2
    finally:
        await again.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_store_can_be_reopened(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    await store.open()
    await store.append("S", [event()], expected_version=0, command_id="a")
    await store.close()
    await store.open()
    try:
        await store.ping()
        await store.append("S", [event()], expected_version=1, command_id="b")
        assert await store.stream_version("S") == 2
    finally:
        await store.close()


async def test_two_stores_on_one_file_share_it_safely(tmp_path: Path) -> None:
    """Two instances have their own connections, like two processes on one file."""
    path = tmp_path / "shared.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    await asyncio.gather(a.open(), b.open())
    try:

        async def writer(store: SQLiteStore, name: str) -> None:
            for i in range(25):
                while True:
                    version = await store.stream_version("S")
                    try:
                        await store.append(
                            "S", [event()], expected_version=version, command_id=f"{name}{i}"
                        )
                        break
                    except ConcurrencyError:
                        continue

        await asyncio.gather(
            *(writer(s, f"{n}{k}-") for n, s in (("a", a), ("b", b)) for k in range(3))
        )
        for store in (a, b):
            stored = await store.read("S")
            assert [e.streamversion for e in stored] == list(range(1, 151))
            assert len({e.id for e in stored}) == 150
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_close_with_appends_in_flight_keeps_every_acknowledged_one(tmp_path: Path) -> None:
    path = tmp_path / "closing.db"
    store = SQLiteStore(path)
    await store.open()

    def append(i: int) -> asyncio.Task[AppendResult]:
        command = store.append(f"S-{i % 7}", [event()], expected_version=None, command_id=f"c{i}")
        return asyncio.create_task(command)

    queued = [append(i) for i in range(100)]
    await asyncio.sleep(0)  # one turn of the loop: these reach the writer's queue
    closing = asyncio.create_task(store.close())
    late = [append(i) for i in range(100, 200)]
    outcomes = await asyncio.gather(*queued, *late, return_exceptions=True)
    await closing
    assert all(isinstance(o, AppendResult | Unavailable) for o in outcomes), outcomes
    acked = [o for o in outcomes if isinstance(o, AppendResult)]
    assert len(acked) == 100  # queued before close: written; after: refused
    assert all(isinstance(o, Unavailable) for o in outcomes[100:])

    again = SQLiteStore(path)
    await again.open()
    try:
        assert len(await read_everything(again)) == 100
        for result in acked:
            found = await again.find_command(result.command_id)
            assert found is not None and same_result(found, result)
    finally:
        await again.close()


async def test_a_locked_file_is_unavailable_not_a_sqlite_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, busy_timeout_ms=50)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(Unavailable, match="locked"):
            await store.append("S", [event()], expected_version=None, command_id="c")
        other.execute("ROLLBACK")
        result = await store.append("S", [event()], expected_version=None, command_id="c")
        assert result.version == 1  # the failed attempt left nothing behind
    finally:
        other.close()
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="schema version"):
        await store.open()
    await store.close()


async def test_an_unusable_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(Unavailable):
        await SQLiteStore(blocker / "events.db").open()


def test_memory_paths_and_unknown_modes_are_refused() -> None:
    with pytest.raises(StoreError):
        SQLiteStore(":memory:")
    with pytest.raises(StoreError):
        SQLiteStore("x.db", synchronous="off")  # type: ignore[arg-type]
