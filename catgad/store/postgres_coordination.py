"""Leases and checkpoints in the PostgreSQL store's schema, for every daemon that uses it.

Each method is one autocommit statement on a pooled connection, through the
store's `_fetch`: its time bound, its retry on a connection that died idle, and
its mapping of psycopg's errors to Unavailable / StoreError. Every statement is
safe to repeat (a retried take-or-renew is a renewal by the same owner, a save
keeps the higher value), so that retry never changes the outcome.

Lease expiries are `timestamptz` values computed by the server with
`clock_timestamp()` in the very statement that compares them, so no daemon's
clock is involved, and the expiry of a renewal counts from when the statement
ran (after any wait for the row lock), not from when its transaction began
(`now()`). A take-or-renew is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`:
PostgreSQL locks the conflicting row, so of many concurrent takers exactly one
inserts or updates and the others see its committed row and change nothing.

The two tables are created with IF NOT EXISTS along with the event tables
(PostgresStore._migrate): a schema made by an older catgad gains them on its
next open, and the schema version (postgres_sql.SCHEMA_VERSION) stays about the
event tables.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from catgad.store.postgres_sql import quote_schema

_DDL = (
    """CREATE TABLE IF NOT EXISTS {s}.leases (
        name text PRIMARY KEY,
        owner text NOT NULL,
        expires timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {s}.checkpoints (
        name text PRIMARY KEY,
        position bigint NOT NULL)""",
)


def ddl(schema: str) -> tuple[str, ...]:
    """The CREATE TABLE statements of the coordination tables in `schema`; idempotent."""
    s = quote_schema(schema)
    return tuple(statement.format(s=s) for statement in _DDL)


class CoordinationStatements:
    """The coordination statements, with the store's schema filled in."""

    def __init__(self, schema: str) -> None:
        s = quote_schema(schema)
        ttl = "make_interval(secs => %s::float8)"
        # a row comes back only when the lease was taken or renewed; another owner's
        # unexpired lease makes the WHERE false, and nothing is returned
        self.acquire = (
            f"INSERT INTO {s}.leases AS l (name, owner, expires)"
            f" VALUES (%s, %s, clock_timestamp() + {ttl})"
            " ON CONFLICT (name) DO UPDATE"
            f" SET owner = excluded.owner, expires = clock_timestamp() + {ttl}"
            " WHERE l.owner = excluded.owner OR l.expires <= clock_timestamp()"
            " RETURNING true"
        )
        self.release = f"DELETE FROM {s}.leases WHERE name = %s AND owner = %s"
        self.owner = f"SELECT owner FROM {s}.leases WHERE name = %s AND expires > clock_timestamp()"
        self.load = f"SELECT position FROM {s}.checkpoints WHERE name = %s"
        self.save = (
            f"INSERT INTO {s}.checkpoints AS c (name, position) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET position = GREATEST(c.position, excluded.position)"
        )
        self.reset = (
            f"INSERT INTO {s}.checkpoints (name, position) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
        )


class PostgresCoordination:
    """The Coordination methods of PostgresStore, which mixes this in and owns the pool."""

    schema: str

    if TYPE_CHECKING:

        async def _fetch(
            self, what: str, sql: str, params: Sequence[object], *, rows: bool = True
        ) -> list[tuple[Any, ...]]: ...

    @functools.cached_property
    def _coordination_sql(self) -> CoordinationStatements:
        return CoordinationStatements(self.schema)

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        sql = self._coordination_sql.acquire
        return bool(await self._fetch("acquire_lease", sql, (name, owner, ttl, ttl)))

    async def release_lease(self, name: str, owner: str) -> None:
        sql = self._coordination_sql.release
        await self._fetch("release_lease", sql, (name, owner), rows=False)

    async def lease_owner(self, name: str) -> str | None:
        rows = await self._fetch("lease_owner", self._coordination_sql.owner, (name,))
        return None if not rows else str(rows[0][0])

    async def load_checkpoint(self, name: str) -> int:
        rows = await self._fetch("load_checkpoint", self._coordination_sql.load, (name,))
        return 0 if not rows else int(rows[0][0])

    async def save_checkpoint(self, name: str, position: int) -> None:
        sql = self._coordination_sql.save
        await self._fetch("save_checkpoint", sql, (name, position), rows=False)

    async def reset_checkpoint(self, name: str, position: int = 0) -> None:
        sql = self._coordination_sql.reset
        await self._fetch("reset_checkpoint", sql, (name, position), rows=False)
