"""The memory and SQLite stores pass the coordination contract; SQLite across two handles on a file.

Two SQLiteStore instances opened on one file stand for two processes: each
has its own writer thread and connections, and they share only the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from catgad.store.memory import MemoryStore
from catgad.store.protocol import Coordination, EventStore
from catgad.store.sqlite import SQLiteStore
from tests.contracts.coordination import CoordinationContract
from tests.contracts.store import event
from tests.store.backends import memory_store, sqlite_store


@asynccontextmanager
async def _coordinating(
    make: Callable[[], AbstractAsyncContextManager[EventStore]],
) -> AsyncIterator[Coordination]:
    async with make() as store:
        assert isinstance(store, Coordination)
        yield store


class TestMemoryCoordination(CoordinationContract):
    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return _coordinating(memory_store)

    @asynccontextmanager
    async def connect_peer(self, store: Coordination) -> AsyncIterator[Coordination]:
        assert isinstance(store, MemoryStore)
        yield store  # one process: the same object is everyone's view


@asynccontextmanager
async def _sqlite_peer(store: Coordination) -> AsyncIterator[Coordination]:
    assert isinstance(store, SQLiteStore)
    peer = SQLiteStore(store.path, synchronous=store.synchronous)
    await peer.open()
    try:
        yield peer
    finally:
        await peer.close()


@pytest.mark.sqlite
class TestSQLiteCoordinationFull(CoordinationContract):
    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return _coordinating(lambda: sqlite_store("full"))

    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        return _sqlite_peer(store)


@pytest.mark.sqlite
class TestSQLiteCoordinationNormal(CoordinationContract):
    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return _coordinating(lambda: sqlite_store("normal"))

    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        return _sqlite_peer(store)


@pytest.mark.sqlite
async def test_leases_and_checkpoints_outlive_the_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = SQLiteStore(path)
    await first.open()
    await first.append("S", [event()], expected_version=0, command_id="c")
    assert await first.acquire_lease("relay:s", "a", 60)
    await first.save_checkpoint("relay:s", 1)
    await first.close()  # a crash would leave the same rows: nothing is released on close

    again = SQLiteStore(path)
    await again.open()
    try:
        assert await again.lease_owner("relay:s") == "a"
        assert await again.load_checkpoint("relay:s") == 1
    finally:
        await again.close()
    with sqlite3.connect(path) as raw:  # plain tables an operator can read
        assert raw.execute("SELECT owner FROM leases WHERE name = 'relay:s'").fetchone() == ("a",)
        assert raw.execute("SELECT position FROM checkpoints").fetchall() == [(1,)]


@pytest.mark.sqlite
async def test_a_file_from_before_coordination_gains_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path)
    await store.open()
    await store.append("S", [event()], expected_version=0, command_id="c")
    await store.close()
    with sqlite3.connect(path) as raw:
        raw.execute("DROP TABLE leases")
        raw.execute("DROP TABLE checkpoints")
    await store.open()
    try:
        assert await store.stream_version("S") == 1
        assert await store.acquire_lease("relay:s", "a", 60)
        await store.save_checkpoint("relay:s", 1)
        assert await store.load_checkpoint("relay:s") == 1
    finally:
        await store.close()


@pytest.mark.sqlite
async def test_coordination_writes_share_batches_with_appends(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    await store.open()
    try:
        jobs = [
            store.append(f"S-{i}", [event()], expected_version=0, command_id=f"c{i}")
            for i in range(20)
        ]
        saves = [store.save_checkpoint("relay:s", i) for i in range(20)]
        leases = [store.acquire_lease("relay:s", "a", 60) for _ in range(5)]
        outcomes = await asyncio.gather(*jobs, *saves, *leases)
        assert all(o is True for o in outcomes[-5:])
        assert await store.load_checkpoint("relay:s") == 19
        assert len(await store.read_all()) == 20
    finally:
        await store.close()
