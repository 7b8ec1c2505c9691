"""A read model in a SQLite table; rows and checkpoint commit in one transaction.

Each database file is opened once per process (SQLiteDatabase) however many
projections use it: one writer thread owns the connection that writes, and a
reader thread the one that answers queries, so a query never waits for a
write (WAL). `synchronous=NORMAL` is enough: a power cut may lose the last
commits, but a commit carries its checkpoint, so the projection resumes from
the last one that survived and applies the same events again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

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
from catgad.projections.targets.sql import SQLITE, Statements, quote

T = TypeVar("T")
_CHUNK = 500  # keys per IN (...) list


class SQLiteDatabase:
    """One read-model file: a writer thread and a reader thread, each with its connection."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="catgad-read-w")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="catgad-read-r")
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self.users = 0

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    async def open(self) -> None:
        if self._w is None:
            self._w = await self._run(self._writer, lambda: self._connect())
            self._r = await self._run(self._reader, lambda: self._connect())

    async def close(self) -> None:
        for executor, conn in ((self._writer, self._w), (self._reader, self._r)):
            if conn is not None:
                await self._run(executor, conn.close)
            executor.shutdown(wait=True)
        self._w = self._r = None

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._w
        if conn is None:
            raise Unavailable(f"read model {self.path}", "not open")
        return await self._run(self._writer, lambda: _transaction(conn, fn))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._r
        if conn is None:
            raise Unavailable(f"read model {self.path}", "not open")
        return await self._run(self._reader, lambda: fn(conn))

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O: may pass
            raise Unavailable(f"read model {self.path}", str(exc)) from None
        except sqlite3.Error as exc:
            raise TargetError(f"sqlite:{self.path}", str(exc)) from None


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class SQLiteTarget:
    """A projection's table (and its shadow during a rebuild) in a SQLiteDatabase."""

    kind = "sqlite"

    def __init__(self, projection: ProjectionDef, db: SQLiteDatabase, *, shadow: bool = False):
        self.projection = projection
        self.name = projection.name
        self.db = db
        self.shadow = shadow
        self.sql = Statements(projection, SQLITE, projection.target.table)

    async def open(self) -> None:
        await self.db.open()
        await self.db.write(self._ensure)

    async def close(self) -> None:
        return None  # the database is closed by whoever opened it (the target factory)

    def _ensure(self, conn: sqlite3.Connection) -> None:
        conn.execute(self.sql.meta_ddl())
        conn.execute(self.sql.insert_meta(), (self.name,))
        self._ensure_table(conn, False)
        if self._meta(conn).rebuild_position is not None:
            self._ensure_table(conn, True)

    def _ensure_table(self, conn: sqlite3.Connection, shadow: bool) -> None:
        """Create the table, then add the columns and indexes it lacks."""
        conn.execute(self.sql.table_ddl(shadow))
        table = self.sql.table(shadow)
        present = {row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))}
        for column in self.sql.columns:
            if column.name not in present:
                conn.execute(self.sql.add_column(shadow, column))
        indexed = {
            conn.execute(
                "SELECT name FROM pragma_index_info(?) WHERE seqno = 0", (ix[1],)
            ).fetchone()[0]
            for ix in conn.execute("SELECT * FROM pragma_index_list(?)", (table,))
            if ix[3] == "c"  # created by CREATE INDEX, not by the primary key
        }
        for name in self.projection.indexed:
            if name not in indexed:
                conn.execute(self.sql.index_ddl(shadow, name))

    def _meta(self, conn: sqlite3.Connection) -> Meta:
        found = conn.execute(self.sql.read_meta(), (self.name,)).fetchone()
        if found is None:
            return Meta(0)
        position, state, error, rebuild = found
        return Meta(position, cast(State, state), error, rebuild)

    async def meta(self) -> Meta:
        return await self.db.read(self._meta)

    async def set_state(self, state: State, error: str | None = None) -> None:
        sql = f"UPDATE {self.sql.meta} SET state = ?, error = ? WHERE name = ?"
        await self.db.write(lambda conn: conn.execute(sql, (state, error, self.name)))

    async def apply(self, ops: Sequence[Op], *, after: int, position: int) -> None:
        groups = self.sql.grouped(ops, self.shadow)
        move = self.sql.move_checkpoint(self.shadow)

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute(move, (position, self.name, after)).rowcount != 1:
                raise self._fenced(conn, after)
            for statement, params in groups:
                conn.executemany(statement, params)

        await self.db.write(run)

    def _fenced(self, conn: sqlite3.Connection, after: int) -> Fenced:
        meta = self._meta(conn)
        return Fenced(self.name, after, meta.rebuild_position if self.shadow else meta.position)

    async def rows(self, keys: Collection[str]) -> dict[str, Row | None]:
        wanted = list(dict.fromkeys(keys))

        def run(conn: sqlite3.Connection) -> dict[str, Row | None]:
            found: dict[str, Row | None] = dict.fromkeys(wanted)
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                for record in conn.execute(self.sql.by_keys(self.shadow, len(chunk)), chunk):
                    row = self.sql.decode(record)
                    found[row.pop("key")] = row
            return found

        # on the writer's connection: what the last apply wrote, whatever readers see
        return await self.db.write(run)

    async def get(self, key: str) -> Row | None:
        def run(conn: sqlite3.Connection) -> Row | None:
            record = conn.execute(self.sql.by_key(), (key,)).fetchone()
            return None if record is None else self.sql.decode(record)

        return await self.db.read(run)

    async def find(
        self, column: str | None, value: Any, *, limit: int, cursor: str | None = None
    ) -> Page:
        after = None if cursor is None else decode_cursor(cursor)
        sql = self.sql.find(column, after is not None)
        params = self.sql.find_params(column, value, after, limit + 1)

        def run(conn: sqlite3.Connection) -> list[Row]:
            return [self.sql.decode(r) for r in conn.execute(sql, params)]

        return page_of(await self.db.read(run), limit)

    async def begin_rebuild(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(f"DROP TABLE IF EXISTS {self.sql.qualified(self.sql.table(True))}")
            self._ensure_table(conn, True)
            reset = f"UPDATE {self.sql.meta} SET rebuild_position = 0 WHERE name = ?"
            conn.execute(reset, (self.name,))

        await self.db.write(run)

    def shadow_target(self) -> ProjectionTarget:
        return SQLiteTarget(self.projection, self.db, shadow=True)

    async def swap(self, *, after: int) -> None:
        live = self.sql.qualified(self.sql.table(False))

        def run(conn: sqlite3.Connection) -> None:
            meta = self._meta(conn)
            if meta.rebuild_position != after:
                raise Fenced(self.name, after, meta.rebuild_position)
            conn.execute(f"DROP TABLE IF EXISTS {live}")
            shadow = self.sql.qualified(self.sql.table(True))
            conn.execute(f"ALTER TABLE {shadow} RENAME TO {quote(self.sql.table(False))}")
            conn.execute(
                f"UPDATE {self.sql.meta} SET position = rebuild_position, "
                "rebuild_position = NULL WHERE name = ?",
                (self.name,),
            )

        await self.db.write(run)

    async def abort_rebuild(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(f"DROP TABLE IF EXISTS {self.sql.qualified(self.sql.table(True))}")
            sql = f"UPDATE {self.sql.meta} SET rebuild_position = NULL WHERE name = ?"
            conn.execute(sql, (self.name,))

        await self.db.write(run)
