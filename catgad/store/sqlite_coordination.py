"""Leases and checkpoints in the SQLite store's file, for every process that opens it.

Writes join the writer thread's batches (sqlite_writer) as jobs of their own:
a checkpoint saved after each relayed batch costs no extra transaction nor
fsync, and SQLite's write lock orders it with every process's appends. Reads
use the store's reader threads.

Lease expiries are unix seconds taken from SQLite's clock (`julianday('now')`)
in the very statement that compares them, so no Python clock is involved.
WAL mode needs memory shared between the processes, so everyone sharing the
file runs on one host and reads one clock.

The two tables (and the process index's, sqlite_process_index) are created with IF NOT
EXISTS after the event tables: a file
made by an older catgad gains them on its first open, and the schema version
(sqlite_tables.SCHEMA_VERSION) stays about the event tables.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from catgad.errors import Unavailable
from catgad.store import sqlite_tables
from catgad.store.sqlite_process_index import SCHEMA as PROCESS_INDEX
from catgad.store.sqlite_writer import Writer, each_in_savepoint

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID""",
)
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"  # unix seconds, millisecond resolution
_ACQUIRE = (
    f"INSERT INTO leases (name, owner, expires) VALUES (?, ?, {_NOW} + ?)"
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires"
    f" WHERE leases.owner = excluded.owner OR leases.expires <= {_NOW}"
)
_RELEASE = "DELETE FROM leases WHERE name = ? AND owner = ?"
_OWNER = f"SELECT owner FROM leases WHERE name = ? AND expires > {_NOW}"
_LOAD = "SELECT position FROM checkpoints WHERE name = ?"
_SAVE = (
    "INSERT INTO checkpoints (name, position) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
    " WHERE excluded.position > checkpoints.position"
)
_RESET = (
    "INSERT INTO checkpoints (name, position) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)


class CoordinationJob(NamedTuple):
    """A write for the writer thread: `run` is called on its connection, inside the batch."""

    run: Callable[[sqlite3.Connection], object]


_PREPARE_PATIENCE = 10.0  # seconds another opener of a new file may hold it locked


def prepare(path: str, synchronous: str, conn: sqlite3.Connection) -> None:
    """The event tables (sqlite_tables.prepare), then ours; idempotent and race-safe.

    Two stores opening one new file at once (two daemons, or `catgad send` beside one)
    can get "database is locked" at once, without the busy handler waiting: switching
    to WAL is not covered by it. Everything here is idempotent, so it is run again."""
    deadline = time.monotonic() + _PREPARE_PATIENCE
    pause = 0.01
    while True:
        try:
            sqlite_tables.prepare(path, synchronous, conn)
            for statement in (*_SCHEMA, *PROCESS_INDEX):
                conn.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if conn.in_transaction:
                conn.rollback()
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)  # a thread of its own (the writer's): nothing to await
        pause = min(pause * 2, 0.2)


def apply(conn: sqlite3.Connection, jobs: list[Any]) -> list[object]:
    """sqlite_tables.apply for the store's jobs, ours each in a savepoint; outcomes in order."""
    if not any(isinstance(job, CoordinationJob) for job in jobs):
        return sqlite_tables.apply(conn, jobs)
    theirs = [job for job in jobs if not isinstance(job, CoordinationJob)]
    ours = [job for job in jobs if isinstance(job, CoordinationJob)]
    their_outcomes = iter(sqlite_tables.apply(conn, theirs) if theirs else [])
    our_outcomes = iter(each_in_savepoint(conn, ours, _run))
    return [
        next(our_outcomes) if isinstance(job, CoordinationJob) else next(their_outcomes)
        for job in jobs
    ]


def _run(conn: sqlite3.Connection, job: CoordinationJob) -> object:
    return job.run(conn)


def _acquire(name: str, owner: str, ttl: float, conn: sqlite3.Connection) -> bool:
    # the upsert changes no row when another owner's unexpired lease stands
    return conn.execute(_ACQUIRE, (name, owner, ttl)).rowcount == 1


def _release(name: str, owner: str, conn: sqlite3.Connection) -> None:
    conn.execute(_RELEASE, (name, owner))


def _owner(name: str, conn: sqlite3.Connection) -> str | None:
    row = conn.execute(_OWNER, (name,)).fetchone()
    return None if row is None else str(row[0])


def _load(name: str, conn: sqlite3.Connection) -> int:
    row = conn.execute(_LOAD, (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _save(statement: str, name: str, position: int, conn: sqlite3.Connection) -> None:
    conn.execute(statement, (name, position))


class SQLiteCoordination:
    """The Coordination methods of SQLiteStore, which mixes this in and owns the threads."""

    _writer: Writer | None

    if TYPE_CHECKING:

        async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T: ...

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        run = functools.partial(_acquire, name, owner, float(ttl))
        return cast(bool, await self._coordinate(run))

    async def release_lease(self, name: str, owner: str) -> None:
        await self._coordinate(functools.partial(_release, name, owner))

    async def lease_owner(self, name: str) -> str | None:
        return await self._read(functools.partial(_owner, name))

    async def load_checkpoint(self, name: str) -> int:
        return await self._read(functools.partial(_load, name))

    async def save_checkpoint(self, name: str, position: int) -> None:
        await self._coordinate(functools.partial(_save, _SAVE, name, position))

    async def reset_checkpoint(self, name: str, position: int = 0) -> None:
        await self._coordinate(functools.partial(_save, _RESET, name, position))

    async def _coordinate(self, run: Callable[[sqlite3.Connection], object]) -> object:
        writer = self._writer
        if writer is None:
            raise Unavailable("sqlite", "the store is not open")
        return await writer.submit(CoordinationJob(run), asyncio.get_running_loop())
