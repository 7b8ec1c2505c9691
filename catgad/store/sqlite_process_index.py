"""The process index of the SQLite store: one table in the store's file.

    process_index (process, instance) -> state, status, version, updated_at, due, asked_at

created with the coordination tables when the file is opened (sqlite_coordination.prepare).
A partial index on (process, due) WHERE due IS NOT NULL makes "due at or before now, up to
N" a range search over the due entries only (tests/processes/test_process_index.py reads the
query plan); waiting instances are further along the same index and never read. Writes join
the writer thread's batches as coordination jobs; reads use the store's reader threads.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from catgad.store.process_index import DueTimer, InstanceRow, Summary

if TYPE_CHECKING:
    from catgad.store.sqlite import SQLiteStore

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS process_index (
        process TEXT NOT NULL, instance TEXT NOT NULL, state TEXT, status TEXT,
        version INTEGER NOT NULL, updated_at REAL NOT NULL, due REAL, asked_at REAL,
        PRIMARY KEY (process, instance)) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS process_index_due
        ON process_index (process, due) WHERE due IS NOT NULL""",
    "CREATE INDEX IF NOT EXISTS process_index_state ON process_index (process, state)",
    """CREATE INDEX IF NOT EXISTS process_index_asked
        ON process_index (process, asked_at) WHERE asked_at IS NOT NULL""",
)
PUT = (
    "INSERT INTO process_index"
    " (process, instance, state, status, version, updated_at, due, asked_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (process, instance) DO UPDATE SET state = excluded.state,"
    " status = excluded.status, version = excluded.version, updated_at = excluded.updated_at,"
    " due = excluded.due, asked_at = excluded.asked_at"
    " WHERE excluded.version > process_index.version"
)
DUE = (
    "SELECT instance, due FROM process_index"
    " WHERE process = ? AND due IS NOT NULL AND due <= ? ORDER BY due LIMIT ?"
)
NEXT_DUE = "SELECT min(due) FROM process_index WHERE process = ? AND due IS NOT NULL"
_COLUMNS = "instance, state, status, version, updated_at, due, asked_at"
LIST_ALL = f"SELECT {_COLUMNS} FROM process_index WHERE process = ? ORDER BY instance"
LIST_STATE = (
    f"SELECT {_COLUMNS} FROM process_index WHERE process = ? AND state = ? ORDER BY instance"
)
ASKING = (
    f"SELECT {_COLUMNS} FROM process_index"
    " WHERE process = ? AND asked_at IS NOT NULL ORDER BY asked_at LIMIT ?"
)
COUNTS = "SELECT state, count(*) FROM process_index WHERE process = ? GROUP BY state"
APPROVALS = (
    "SELECT count(*), min(asked_at) FROM process_index WHERE process = ? AND asked_at IS NOT NULL"
)


def _put(process: str, rows: Sequence[InstanceRow], conn: sqlite3.Connection) -> None:
    conn.executemany(
        PUT,
        [
            (process, r.instance, r.state, r.status, r.version, r.updated_at, r.due, r.asked_at)
            for r in rows
        ],
    )


def _due(process: str, now: float, limit: int, conn: sqlite3.Connection) -> list[DueTimer]:
    return [DueTimer(str(i), float(d)) for i, d in conn.execute(DUE, (process, now, limit))]


def _next_due(process: str, conn: sqlite3.Connection) -> float | None:
    row = conn.execute(NEXT_DUE, (process,)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _listing(process: str, state: str | None, conn: sqlite3.Connection) -> list[InstanceRow]:
    if state is None:
        found = conn.execute(LIST_ALL, (process,))
    else:
        found = conn.execute(LIST_STATE, (process, state))
    return [InstanceRow(*row) for row in found]


def _asking(process: str, limit: int, conn: sqlite3.Connection) -> list[InstanceRow]:
    return [InstanceRow(*row) for row in conn.execute(ASKING, (process, limit))]


def _summary(process: str, conn: sqlite3.Connection) -> Summary:
    states = {str(s): int(n) for s, n in conn.execute(COUNTS, (process,)) if s is not None}
    count, oldest = conn.execute(APPROVALS, (process,)).fetchone()
    return Summary(states, int(count), None if oldest is None else float(oldest))


class SQLiteProcessIndex:
    durable = True

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def put(self, process: str, rows: Sequence[InstanceRow]) -> None:
        if rows:
            await self.store._coordinate(functools.partial(_put, process, list(rows)))

    async def due(self, process: str, now: float, limit: int) -> list[DueTimer]:
        return await self.store._read(functools.partial(_due, process, now, limit))

    async def next_due(self, process: str) -> float | None:
        return await self.store._read(functools.partial(_next_due, process))

    async def drop(self, process: str, timer: DueTimer) -> None:
        """Nothing to do: the row's `due` is replaced with the row (put)."""

    async def listing(self, process: str, state: str | None = None) -> list[InstanceRow]:
        return await self.store._read(functools.partial(_listing, process, state))

    async def asking(self, process: str, limit: int) -> list[InstanceRow]:
        return await self.store._read(functools.partial(_asking, process, limit))

    async def summary(self, process: str) -> Summary:
        return await self.store._read(functools.partial(_summary, process))
