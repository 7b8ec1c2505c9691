"""Every event store under test, as async context managers yielding an opened, private store."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from catgad.store.memory import MemoryStore
from catgad.store.protocol import EventStore
from catgad.store.sqlite import SQLiteStore, Synchronous


@asynccontextmanager
async def memory_store() -> AsyncIterator[EventStore]:
    store = MemoryStore()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def sqlite_store(
    synchronous: Synchronous = "full", path: Path | None = None
) -> AsyncIterator[EventStore]:
    """At `path`, or in a directory of its own that does not exist yet (the store makes it)."""
    with tempfile.TemporaryDirectory(prefix="catgad-store-") as tmp:
        store = SQLiteStore(path or Path(tmp) / "data" / "events.db", synchronous=synchronous)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


def sqlite_normal() -> AbstractAsyncContextManager[EventStore]:
    return sqlite_store("normal")


BACKENDS: dict[str, Callable[[], AbstractAsyncContextManager[EventStore]]] = {
    "memory": memory_store,
    "sqlite-full": sqlite_store,
    "sqlite-normal": sqlite_normal,
}
