"""A read model in a PostgreSQL table; rows and checkpoint commit in one transaction.

The SQL is catgad.projections.targets.sql's, with `%s` parameters and native
types (BIGINT, DOUBLE PRECISION, BOOLEAN, JSONB). Each transaction starts by
moving the checkpoint (UPDATE ... WHERE position = after), which also locks
the projection's row: a second writer waits for the first to commit and then
finds the checkpoint moved (Fenced). Schema changes take an advisory lock, so
daemons starting together do not race on CREATE TABLE. Connection failures
and timeouts are Unavailable; a refused statement is a TargetError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from catgad.errors import Fenced, TargetError, Unavailable
from catgad.projections.mapping import Op
from catgad.projections.model import ProjectionDef
from catgad.projections.targets.protocol import (
    Meta,
    Page,
    ProjectionTarget,
    Row,
    State,
    decode_cursor,
    page_of,
)
from catgad.projections.targets.sql import Dialect, Statements, quote

Conn = psycopg.AsyncConnection[Any]
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('catgad_projections'))"
_CHUNK = 1000

POSTGRES = Dialect(
    name="postgres",
    param="%s",
    types={
        "string": "TEXT",
        "integer": "BIGINT",
        "number": "DOUBLE PRECISION",
        "boolean": "BOOLEAN",
        "json": "JSONB",
    },
    true="TRUE",
    false="FALSE",
    encode_json=lambda v: None if v is None else Jsonb(v),
    decode_json=lambda v: v,
    decode_bool=lambda v: v,
)
_COLUMNS = (
    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
)
_INDEXED = (
    "SELECT a.attname FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
    " JOIN pg_namespace n ON n.oid = t.relnamespace"
    " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]"
    " WHERE n.nspname = %s AND t.relname = %s AND NOT i.indisprimary"
)


class PostgresDatabase:
    """A connection pool to one server, shared by the projections that use it."""

    def __init__(self, url: str, *, pool_max: int = 4, timeout: float = 10.0) -> None:
        self.url = url
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_max,
            timeout=timeout,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": int(max(1, min(timeout, 5)))},
        )
        self.where = url.split("@")[-1]
        self._opened = False
        self.users = 0

    async def open(self) -> None:
        if not self._opened:
            await self.pool.open(wait=False)
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self.pool.close()
            self._opened = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        try:
            async with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout, PoolClosed) as exc:
            raise Unavailable(f"postgres read model {self.where}", _short(exc)) from None
        except psycopg.Error as exc:
            raise TargetError(f"postgres:{self.where}", _short(exc)) from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.connection() as conn, conn.transaction():
            yield conn


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class PostgresTarget:
    """A projection's table (and its shadow during a rebuild) on a PostgreSQL server."""

    kind = "postgres"

    def __init__(self, projection: ProjectionDef, db: PostgresDatabase, *, shadow: bool = False):
        self.projection = projection
        self.name = projection.name
        self.db = db
        self.shadow = shadow
        self.schema = projection.target.schema
        self.sql = Statements(projection, POSTGRES, projection.target.table, self.schema)

    async def open(self) -> None:
        await self.db.open()
        async with self.db.transaction() as conn:
            await conn.execute(_LOCK)
            if self.schema:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
            await conn.execute(self.sql.meta_ddl())
            await conn.execute(self.sql.insert_meta(), (self.name,))
            await self._ensure_table(conn, False)
            if (await self._meta(conn)).rebuild_position is not None:
                await self._ensure_table(conn, True)

    async def close(self) -> None:
        return None

    async def _schema_name(self, conn: Conn) -> str:
        if self.schema:
            return self.schema
        row = await (await conn.execute("SELECT current_schema()")).fetchone()
        return str(row[0]) if row else "public"

    async def _ensure_table(self, conn: Conn, shadow: bool) -> None:
        await conn.execute(self.sql.table_ddl(shadow))
        where = (await self._schema_name(conn), self.sql.table(shadow))
        present = {r[0] for r in await (await conn.execute(_COLUMNS, where)).fetchall()}
        for column in self.sql.columns:
            if column.name not in present:
                await conn.execute(self.sql.add_column(shadow, column))
        indexed = {r[0] for r in await (await conn.execute(_INDEXED, where)).fetchall()}
        for column_name in self.projection.indexed:
            if column_name not in indexed:
                await conn.execute(self.sql.index_ddl(shadow, column_name))

    async def _meta(self, conn: Conn) -> Meta:
        row = await (await conn.execute(self.sql.read_meta(), (self.name,))).fetchone()
        if row is None:
            return Meta(0)
        position, state, error, rebuild = row
        return Meta(int(position), cast(State, state), error, rebuild)

    async def meta(self) -> Meta:
        async with self.db.connection() as conn:
            return await self._meta(conn)

    async def set_state(self, state: State, error: str | None = None) -> None:
        sql = f"UPDATE {self.sql.meta} SET state = %s, error = %s WHERE name = %s"
        async with self.db.connection() as conn:
            await conn.execute(sql, (state, error, self.name))

    async def apply(self, ops: Sequence[Op], *, after: int, position: int) -> None:
        groups = self.sql.grouped(ops, self.shadow)
        async with self.db.transaction() as conn:
            # one round trip: the checkpoint's move and every statement, pipelined; a fenced
            # writer finds out at the end and rolls all of it back
            async with conn.pipeline():
                moved = await conn.execute(
                    self.sql.move_checkpoint(self.shadow), (position, self.name, after)
                )
                async with conn.cursor() as cur:
                    for statement, params in groups:
                        await cur.executemany(statement, params)
            if moved.rowcount != 1:
                meta = await self._meta(conn)
                actual = meta.rebuild_position if self.shadow else meta.position
                raise Fenced(self.name, after, actual)

    async def rows(self, keys: Collection[str]) -> dict[str, Row | None]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Row | None] = dict.fromkeys(wanted)
        async with self.db.connection() as conn:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                cur = await conn.execute(self.sql.by_keys(self.shadow, len(chunk)), chunk)
                for record in await cur.fetchall():
                    row = self.sql.decode(record)
                    found[row.pop("key")] = row
        return found

    async def get(self, key: str) -> Row | None:
        async with self.db.connection() as conn:
            record = await (await conn.execute(self.sql.by_key(), (key,))).fetchone()
        return None if record is None else self.sql.decode(record)

    async def find(
        self, column: str | None, value: Any, *, limit: int, cursor: str | None = None
    ) -> Page:
        after = None if cursor is None else decode_cursor(cursor)
        sql = self.sql.find(column, after is not None)
        params = self.sql.find_params(column, value, after, limit + 1)
        async with self.db.connection() as conn:
            records = await (await conn.execute(sql, params)).fetchall()
        return page_of([self.sql.decode(r) for r in records], limit)

    async def begin_rebuild(self) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(_LOCK)
            await conn.execute(f"DROP TABLE IF EXISTS {self.sql.qualified(self.sql.table(True))}")
            await self._ensure_table(conn, True)
            reset = f"UPDATE {self.sql.meta} SET rebuild_position = 0 WHERE name = %s"
            await conn.execute(reset, (self.name,))

    def shadow_target(self) -> ProjectionTarget:
        return PostgresTarget(self.projection, self.db, shadow=True)

    async def swap(self, *, after: int) -> None:
        async with self.db.transaction() as conn:
            lock = f"SELECT rebuild_position FROM {self.sql.meta} WHERE name = %s FOR UPDATE"
            row = await (await conn.execute(lock, (self.name,))).fetchone()
            if row is None or row[0] != after:
                raise Fenced(self.name, after, None if row is None else row[0])
            await conn.execute(f"DROP TABLE IF EXISTS {self.sql.qualified(self.sql.table(False))}")
            shadow = self.sql.qualified(self.sql.table(True))
            await conn.execute(f"ALTER TABLE {shadow} RENAME TO {quote(self.sql.table(False))}")
            await conn.execute(
                f"UPDATE {self.sql.meta} SET position = rebuild_position, "
                "rebuild_position = NULL WHERE name = %s",
                (self.name,),
            )

    async def abort_rebuild(self) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {self.sql.qualified(self.sql.table(True))}")
            sql = f"UPDATE {self.sql.meta} SET rebuild_position = NULL WHERE name = %s"
            await conn.execute(sql, (self.name,))
