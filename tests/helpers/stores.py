"""Every event store backend, as openers of a private, opened store: memory, SQLite,
PostgreSQL, Redis and NATS (the oldest supported server, 2.9).

    @pytest.mark.parametrize("backend", BACKEND_PARAMS)
    async def test_x(backend: str, tmp_path: Path) -> None:
        async with BACKENDS[backend](tmp_path) as store:
            ...

Each server store is on its own schema, key prefix or JetStream stream, removed
afterwards; SQLite's file is in `tmp_path`. A server that does not answer skips
the test (fails in CI), as tests/servers says.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from catgad.store.protocol import EventStore
from tests.store.backends import memory_store, sqlite_store

Opener = Callable[[Path], AbstractAsyncContextManager[EventStore]]


def memory(tmp_path: Path) -> AbstractAsyncContextManager[EventStore]:
    return memory_store()


def sqlite(tmp_path: Path) -> AbstractAsyncContextManager[EventStore]:
    return sqlite_store("normal", tmp_path / "m.db")


@contextlib.asynccontextmanager
async def postgres(tmp_path: Path) -> AsyncIterator[EventStore]:
    from tests.servers.postgres import postgres_store

    async with postgres_store() as store:
        yield store


@contextlib.asynccontextmanager
async def redis(tmp_path: Path) -> AsyncIterator[EventStore]:
    from tests.servers.redis import redis_store

    async with redis_store() as store:
        yield store


@contextlib.asynccontextmanager
async def nats(tmp_path: Path) -> AsyncIterator[EventStore]:
    from tests.servers.nats import nats_store, server_url

    async with nats_store(server_url("2.9")) as store:
        yield store


BACKENDS: dict[str, Opener] = {
    "memory": memory,
    "sqlite": sqlite,
    "postgres": postgres,
    "redis": redis,
    "nats": nats,
}
MARKS = {name: getattr(pytest.mark, name) for name in ("sqlite", "postgres", "redis", "nats")}
# for @pytest.mark.parametrize("backend", BACKEND_PARAMS): each backend with its marker
BACKEND_PARAMS = [
    pytest.param(name, marks=MARKS[name]) if name in MARKS else name for name in BACKENDS
]
