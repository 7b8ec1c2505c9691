"""The process index of the PostgreSQL store: one table in the store's schema.

    process_index (process, instance) -> state, status, version, updated_at, due, asked_at

created with the coordination tables by PostgresStore._migrate. A partial index on
(process, due) WHERE due IS NOT NULL makes "due at or before now, up to N" an index range
scan over the due entries only (tests/processes/test_process_index.py reads the plan). Each
method is one autocommit statement through the store's `_fetch` (its time bound, its retry,
its error mapping); a put of many rows is one statement (unnest), a row replaced only by a
higher version, so repeating one is harmless.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from catgad.store.postgres_sql import quote_schema
from catgad.store.process_index import DueTimer, InstanceRow, Summary

if TYPE_CHECKING:
    from catgad.store.postgres import PostgresStore

_DDL = (
    """CREATE TABLE IF NOT EXISTS {s}.process_index (
        process text NOT NULL, instance text NOT NULL, state text, status text,
        version bigint NOT NULL, updated_at float8 NOT NULL, due float8, asked_at float8,
        PRIMARY KEY (process, instance))""",
    """CREATE INDEX IF NOT EXISTS process_index_due
        ON {s}.process_index (process, due) WHERE due IS NOT NULL""",
    "CREATE INDEX IF NOT EXISTS process_index_state ON {s}.process_index (process, state)",
    """CREATE INDEX IF NOT EXISTS process_index_asked
        ON {s}.process_index (process, asked_at) WHERE asked_at IS NOT NULL""",
)
_COLUMNS = "instance, state, status, version, updated_at, due, asked_at"


def ddl(schema: str) -> tuple[str, ...]:
    s = quote_schema(schema)
    return tuple(statement.format(s=s) for statement in _DDL)


class Statements:
    def __init__(self, schema: str) -> None:
        s = quote_schema(schema)
        self.put = (
            f"INSERT INTO {s}.process_index AS p (process, {_COLUMNS})"
            " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[],"
            " %s::float8[], %s::float8[], %s::float8[])"
            " ON CONFLICT (process, instance) DO UPDATE SET state = excluded.state,"
            " status = excluded.status, version = excluded.version,"
            " updated_at = excluded.updated_at, due = excluded.due, asked_at = excluded.asked_at"
            " WHERE excluded.version > p.version"
        )
        self.due = (
            f"SELECT instance, due FROM {s}.process_index"
            " WHERE process = %s AND due IS NOT NULL AND due <= %s ORDER BY due LIMIT %s"
        )
        self.next_due = (
            f"SELECT min(due) FROM {s}.process_index WHERE process = %s AND due IS NOT NULL"
        )
        self.list_all = (
            f"SELECT {_COLUMNS} FROM {s}.process_index WHERE process = %s ORDER BY instance"
        )
        self.list_state = (
            f"SELECT {_COLUMNS} FROM {s}.process_index"
            " WHERE process = %s AND state = %s ORDER BY instance"
        )
        self.asking = (
            f"SELECT {_COLUMNS} FROM {s}.process_index"
            " WHERE process = %s AND asked_at IS NOT NULL ORDER BY asked_at LIMIT %s"
        )
        self.counts = (
            f"SELECT state, count(*) FROM {s}.process_index WHERE process = %s GROUP BY state"
        )
        self.approvals = (
            f"SELECT count(*), min(asked_at) FROM {s}.process_index"
            " WHERE process = %s AND asked_at IS NOT NULL"
        )


class PostgresProcessIndex:
    durable = True

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    @functools.cached_property
    def _sql(self) -> Statements:
        return Statements(self.store.schema)

    async def put(self, process: str, rows: Sequence[InstanceRow]) -> None:
        if not rows:
            return
        columns = (
            [r.instance for r in rows],
            [r.state for r in rows],
            [r.status for r in rows],
            [r.version for r in rows],
            [r.updated_at for r in rows],
            [r.due for r in rows],
            [r.asked_at for r in rows],
        )
        await self.store._fetch("process index put", self._sql.put, (process, *columns), rows=False)

    async def due(self, process: str, now: float, limit: int) -> list[DueTimer]:
        found = await self.store._fetch("process index due", self._sql.due, (process, now, limit))
        return [DueTimer(str(i), float(d)) for i, d in found]

    async def next_due(self, process: str) -> float | None:
        found = await self.store._fetch("process index next due", self._sql.next_due, (process,))
        return None if not found or found[0][0] is None else float(found[0][0])

    async def drop(self, process: str, timer: DueTimer) -> None:
        """Nothing to do: the row's `due` is replaced with the row (put)."""

    async def listing(self, process: str, state: str | None = None) -> list[InstanceRow]:
        if state is None:
            found = await self.store._fetch("process listing", self._sql.list_all, (process,))
        else:
            sql = self._sql.list_state
            found = await self.store._fetch("process listing", sql, (process, state))
        return [InstanceRow(*row) for row in found]

    async def asking(self, process: str, limit: int) -> list[InstanceRow]:
        found = await self.store._fetch("process asking", self._sql.asking, (process, limit))
        return [InstanceRow(*row) for row in found]

    async def summary(self, process: str) -> Summary:
        counts = await self.store._fetch("process summary", self._sql.counts, (process,))
        asked = await self.store._fetch("process summary", self._sql.approvals, (process,))
        count, oldest = asked[0]
        states = {str(state): int(n) for state, n in counts if state is not None}
        return Summary(states, int(count), None if oldest is None else float(oldest))
