"""An event store in one SQLite file: the embedded default, durable and shareable by processes.

Writes go through one writer thread (sqlite_writer: group commit, one fsync
per batch; sqlite_tables: what each transaction does). An append is
acknowledged only after its COMMIT returned, so it is on disk
(synchronous="full") or at least in the WAL file, which survives a killed
process (synchronous="normal": the last commits may be lost on power loss or
an OS crash). The stream version is checked inside the write transaction, so
other processes sharing the file (a second daemon, the CLI) are safe too; they
wait for the write lock up to `busy_timeout_ms`.

Reads run on a small thread pool, one read-only connection per thread; WAL lets
them proceed while the writer commits. No sqlite3 exception leaves this
package of modules: OperationalError (locked, I/O, disk full) becomes
Unavailable, anything else StoreError.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

import orjson

from catgad.envelope import Envelope
from catgad.errors import StoreError, Unavailable
from catgad.store.codec import (
    StoredEvent,
    decode_event,
    decode_state,
    encode_events,
    encode_state,
)
from catgad.store.protocol import AppendResult, Capability, Snapshot
from catgad.store.sqlite_coordination import SQLiteCoordination, apply, prepare
from catgad.store.sqlite_tables import (
    SCHEMA_VERSION,
    VERSION_OF,
    Appended,
    AppendJob,
    RewriteJob,
    SnapshotJob,
    command_result,
)
from catgad.store.sqlite_writer import Writer, connect, mapped

__all__ = ["DEFAULT_PATH", "SCHEMA_VERSION", "SQLiteStore", "Synchronous"]

T = TypeVar("T")
Synchronous = Literal["full", "normal"]
DEFAULT_PATH = "catgad.db"


def _read_stream(
    stream: str, after: int, limit: int | None, conn: sqlite3.Connection
) -> list[Envelope]:
    rows = conn.execute(
        "SELECT position, version, body FROM events"
        " WHERE stream = ? AND version > ? ORDER BY version LIMIT ?",
        (stream, after, -1 if limit is None else max(limit, 0)),
    ).fetchall()
    return [decode_event(body, stream, v, p) for p, v, body in rows]


def _read_all(after: int, limit: int, conn: sqlite3.Connection) -> list[Envelope]:
    rows = conn.execute(
        "SELECT position, stream, version, body FROM events"
        " WHERE position > ? ORDER BY position LIMIT ?",
        (after, max(limit, 0)),
    ).fetchall()
    return [decode_event(body, s, v, p) for p, s, v, body in rows]


def _read_records(
    after: int, limit: int, types: frozenset[str] | None, conn: sqlite3.Connection
) -> list[StoredEvent]:
    rows = conn.execute(
        "SELECT position, stream, version, type, body FROM events"
        " WHERE position > ? ORDER BY position LIMIT ?",
        (after, max(limit, 0)),
    ).fetchall()
    # once per event of a catch-up, holding the GIL: kept to a tuple and one orjson.loads
    loads, record = orjson.loads, StoredEvent
    out: list[StoredEvent] = []
    append = out.append
    for position, stream, version, kind, body in rows:
        if types is None or kind in types:
            doc = loads(body)
            append(record(position, stream, version, kind, body, doc, doc["data"]))
        else:
            append(record(position, stream, version, kind, body, None, None))
    return out


def _stream_version(stream: str, conn: sqlite3.Connection) -> int:
    row = conn.execute(VERSION_OF, (stream,)).fetchone()
    return 0 if row is None else int(row[0])


def _find_command(command_id: str, conn: sqlite3.Connection) -> AppendResult | None:
    return command_result(conn, command_id, duplicate=False)


def _load_snapshot(stream: str, conn: sqlite3.Connection) -> Snapshot | None:
    row = conn.execute(
        "SELECT version, state FROM snapshots WHERE stream = ?", (stream,)
    ).fetchone()
    return None if row is None else Snapshot(stream, row[0], decode_state(row[1]))


def _ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


class SQLiteStore(SQLiteCoordination):
    """The event store in one SQLite file (see the module docstring for how it writes).

    Leases and checkpoints (the Coordination protocol) come from SQLiteCoordination.
    """

    name = "sqlite"
    capabilities = Capability.DURABLE | Capability.GAPLESS_GLOBAL_ORDER | Capability.MULTI_PROCESS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "full",
        busy_timeout_ms: int = 5000,
        max_batch: int = 1024,
        readers: int = 4,
    ) -> None:
        self.path = os.fspath(path)
        if self.path == ":memory:" or not self.path:
            raise StoreError("the sqlite store needs a file; use the memory store instead")
        if synchronous not in ("full", "normal"):
            raise StoreError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self.synchronous: Synchronous = synchronous
        self._busy_ms = busy_timeout_ms
        self._max_batch = max(1, max_batch)
        self._readers_max = max(1, readers)
        self._writer: Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(
                "sqlite", f"cannot create the directory of {self.path}: {exc}"
            ) from exc
        setup = functools.partial(prepare, self.path, self.synchronous)
        writer = Writer(self.path, self._busy_ms, self._max_batch, setup, apply)
        writer.start()
        await asyncio.wrap_future(writer.ready)
        self._writer = writer
        # a fresh thread-local per opening, so no thread reuses a closed connection
        self._local = threading.local()
        self._reader_conns = []
        self._readers = ThreadPoolExecutor(self._readers_max, "catgad-sqlite-read")

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        readers, self._readers = self._readers, None
        if writer is not None:
            writer.stop()
            await asyncio.wrap_future(writer.done)
        if readers is not None:
            await asyncio.to_thread(readers.shutdown, wait=True)
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns = []

    async def ping(self) -> None:
        if self._writer is None or not self._writer.alive():
            raise Unavailable("sqlite", "the store is closed")
        await self._read(_ping)

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        *,
        expected_version: int | None,
        command_id: str,
    ) -> AppendResult:
        records = encode_events(stream, events)
        outcome = await self._write(AppendJob(stream, records, expected_version, command_id))
        if isinstance(outcome, AppendResult):  # a re-sent command: its first result
            return outcome
        assert isinstance(outcome, Appended)
        first = outcome.version - len(records) + 1
        stored = [
            decode_event(r.body, stream, first + i, outcome.first_position + i)
            for i, r in enumerate(records)
        ]
        return AppendResult(stream, command_id, outcome.version, stored, False)

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> list[Envelope]:
        return await self._read(functools.partial(_read_stream, stream, after, limit))

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        return await self._read(functools.partial(_read_all, after, limit))

    async def read_records(
        self, *, after: int = 0, limit: int = 1000, types: Collection[str] | None = None
    ) -> list[StoredEvent]:
        """What read_all reads, lighter: records rather than envelopes (projection catch-up),
        with only the bodies of events of `types` (None: all) decoded."""
        wanted = None if types is None else frozenset(types)
        return await self._read(functools.partial(_read_records, after, limit, wanted))

    async def stream_version(self, stream: str) -> int:
        return await self._read(functools.partial(_stream_version, stream))

    async def find_command(self, command_id: str) -> AppendResult | None:
        return await self._read(functools.partial(_find_command, command_id))

    async def rewrite(self, events: Sequence[Envelope]) -> int:
        if not events:
            return 0
        written = await self._write(RewriteJob(list(events)))
        assert isinstance(written, int)
        return written

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        state = encode_state(snapshot.state)
        await self._write(SnapshotJob(snapshot.stream, snapshot.version, state))

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        return await self._read(functools.partial(_load_snapshot, stream))

    async def _write(self, job: AppendJob | SnapshotJob | RewriteJob) -> object:
        writer = self._writer
        if writer is None:
            raise Unavailable("sqlite", "the store is not open")
        return await writer.submit(job, asyncio.get_running_loop())

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        readers = self._readers
        if readers is None:
            raise Unavailable("sqlite", "the store is not open")
        loop = asyncio.get_running_loop()
        try:
            pending = loop.run_in_executor(
                readers, self._in_reader, query, self._local, self._reader_conns
            )
        except RuntimeError as exc:  # the pool was shut down by a concurrent close()
            raise Unavailable("sqlite", "the store is closed") from exc
        return await pending

    def _in_reader(
        self,
        query: Callable[[sqlite3.Connection], T],
        local: threading.local,
        conns: list[sqlite3.Connection],
    ) -> T:
        try:
            conn: sqlite3.Connection | None = getattr(local, "conn", None)
            if conn is None:
                conn = connect(self.path, self._busy_ms)
                conn.execute("PRAGMA query_only = ON")
                local.conn = conn
                conns.append(conn)
            return query(conn)
        except sqlite3.Error as exc:
            raise mapped(exc) from exc
