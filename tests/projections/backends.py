"""Every table target under test, as storages: `async with STORAGES[kind]() as open_target`.

A storage is private to one test (a temporary SQLite file, a fresh PostgreSQL
schema on the shared server, a fresh Redis key prefix) and removed after it.
Every target opened through it shares that storage, as daemons share a
database; they are closed when the storage closes. PostgreSQL and Redis skip
when their server is unreachable, and fail instead when CI=true.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from catgad.projections.model import ProjectionDef
from catgad.projections.targets.protocol import ProjectionTarget
from tests.contracts.projection_target import OpenTarget


def _with_target(projection: ProjectionDef, **changes: object) -> ProjectionDef:
    target = dataclasses.replace(projection.target, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(projection, target=target)


@asynccontextmanager
async def sqlite_storage() -> AsyncIterator[OpenTarget]:
    from catgad.projections.targets.sqlite import SQLiteDatabase, SQLiteTarget

    with tempfile.TemporaryDirectory(prefix="catgad-read-") as tmp:
        path = str(Path(tmp) / "read.db")
        dbs: list[SQLiteDatabase] = []

        async def open_target(projection: ProjectionDef) -> ProjectionTarget:
            db = SQLiteDatabase(path)  # one per target: as separate processes would
            dbs.append(db)
            target = SQLiteTarget(_with_target(projection, kind="sqlite", path=path), db)
            await target.open()
            return target

        try:
            yield open_target
        finally:
            for db in dbs:
                await db.close()


@asynccontextmanager
async def postgres_storage() -> AsyncIterator[OpenTarget]:
    from catgad.projections.targets.postgres import PostgresDatabase, PostgresTarget
    from tests.servers.postgres import schema_on_shared_server

    with schema_on_shared_server() as (url, schema):
        dbs: list[PostgresDatabase] = []

        async def open_target(projection: ProjectionDef) -> ProjectionTarget:
            db = PostgresDatabase(url, pool_max=2)
            dbs.append(db)
            changed = _with_target(projection, kind="postgres", url=url, schema=schema)
            target = PostgresTarget(changed, db)
            await target.open()
            return target

        try:
            yield open_target
        finally:
            for db in dbs:
                await db.close()


@asynccontextmanager
async def redis_storage() -> AsyncIterator[OpenTarget]:
    from catgad.projections.targets.redis import RedisConnection, RedisTarget
    from tests.servers.redis import server_url, unique_prefix, wipe

    url = server_url()
    prefix = unique_prefix()
    opened: list[tuple[RedisConnection, RedisTarget]] = []

    async def open_target(projection: ProjectionDef) -> ProjectionTarget:
        conn = RedisConnection(url)
        target = RedisTarget(_with_target(projection, kind="redis", url=url, prefix=prefix), conn)
        opened.append((conn, target))
        await target.open()
        return target

    try:
        yield open_target
    finally:
        for conn, target in opened:
            await target.close()
            await conn.close()
        await wipe(url, prefix)


STORAGES: dict[str, Callable[[], AbstractAsyncContextManager[OpenTarget]]] = {
    "sqlite": sqlite_storage,
    "postgres": postgres_storage,
    "redis": redis_storage,
}
