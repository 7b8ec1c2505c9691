"""An event store in PostgreSQL: shared by many daemons, in one global order no reader can skip.

Why positions come from a locked head row. A `bigserial` position is taken at
INSERT time, so transactions commit out of position order: A takes 10, B takes
11 and commits first, a reader sees 11, stores checkpoint 11 and never sees 10.
Marten-style high-water marks only guess (a gap older than a timeout is deemed
a rollback), and reading below `pg_snapshot_xmin(pg_current_snapshot())`
orders by transaction id, not by one integer, and stalls every reader behind
any long write transaction in the cluster. Here every write transaction first
locks the one row of `head` (SELECT ... FOR UPDATE), takes positions from it
and writes the new head back before COMMIT. A second writer waits for that lock
until the first has committed, and PostgreSQL makes a commit visible before it
releases the committer's locks, so:

- positions are handed out in commit order: when a reader sees position p,
  every position below p was committed before it and is visible too;
- they are contiguous: a rolled-back transaction rolls its head update back,
  so no number is ever lost (Capability.GAPLESS_GLOBAL_ORDER, honestly);
- read_all is a plain index range scan; readers never wait for writers.

The price is that writers take turns. Each daemon therefore runs group commit:
appends queue up, and a writer task takes everything waiting (up to
`max_batch`) into one transaction of two round trips (a psycopg pipeline each):
BEGIN, lock head, one SELECT of what the batch depends on (stream versions,
known command ids, known event ids); then one INSERT ... unnest statement for
all accepted events and commands and the new head, and COMMIT: one WAL flush
for the whole batch. The decisions (expected version, re-sent commands and
events) are made in Python under the lock by postgres_sql.plan_batch, so one
refused append never aborts the transaction of the others.

Errors never leave as psycopg exceptions: connection failures, statement and
pool timeouts become Unavailable (retryable); anything else StoreError. An
append whose COMMIT may or may not have happened is reported Unavailable, and
its retry with the same command id is answered from the store (idempotency).
Connect, pool wait, statement and idle-in-transaction times are bounded, and
the pool replaces dead connections, so the store works again once the server
is back without being reopened.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from catgad.envelope import Envelope
from catgad.errors import CatgadError, StoreError, Unavailable
from catgad.store.codec import decode_event, decode_state, encode_events, encode_state
from catgad.store.postgres_coordination import PostgresCoordination
from catgad.store.postgres_coordination import ddl as coordination_ddl
from catgad.store.postgres_process_index import ddl as process_index_ddl
from catgad.store.postgres_rewrite import rewrite_events
from catgad.store.postgres_sql import (
    SCHEMA_VERSION,
    Job,
    Known,
    Outcome,
    Plan,
    Repeat,
    Statements,
    connection_lost,
    conninfo,
    known_from,
    plan_batch,
    refuse_nul,
)
from catgad.store.protocol import AppendResult, Capability, Snapshot

__all__ = ["DEFAULT_URL", "SCHEMA_VERSION", "PostgresStore"]

DEFAULT_URL = "postgresql://127.0.0.1:5432/postgres"
Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Row = tuple[Any, ...]
_DEP = "postgres"
_UNIQUE_RETRIES = 3  # tries of a batch that hits unique violations (see _commit)


class _JsonBytes(Loader):
    """json columns as the bytes the codec decodes, not parsed into Python by psycopg."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


async def _configure(conn: Conn) -> None:
    conn.adapters.register_loader("json", _JsonBytes)


class PostgresStore(PostgresCoordination):
    """The event store in a PostgreSQL schema (see the module docstring for how it writes)."""

    name = "postgres"
    capabilities = Capability.DURABLE | Capability.GAPLESS_GLOBAL_ORDER | Capability.MULTI_PROCESS

    def __init__(
        self,
        url: str | None = None,
        *,
        schema: str = "catgad",
        pool_min: int = 2,
        pool_max: int = 16,
        max_batch: int = 500,
        writers: int = 1,
        connect_timeout: float = 5.0,
        pool_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        reconnect_timeout: float = 5.0,
    ) -> None:
        self.url = url or DEFAULT_URL
        self.schema = schema
        self._sql = Statements(schema)  # checks the schema name
        try:
            self._conninfo = conninfo(self.url, connect_timeout, statement_timeout)
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"postgres: bad url: {exc}") from None
        self._pool_min = max(1, pool_min)
        self._pool_max = max(self._pool_min, pool_max, writers + 1)
        self._max_batch = max(1, max_batch)
        self._writers_n = max(1, writers)
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._reconnect_timeout = reconnect_timeout
        # a client-side bound for when the server stops answering altogether
        self._op_timeout = pool_timeout + statement_timeout + 1.0
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._closing = False
        self._queue: collections.deque[tuple[Job, asyncio.Future[Outcome]]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._writers: list[asyncio.Task[None]] = []
        self._checking: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=self._pool_min,
            max_size=self._pool_max,
            open=False,
            kwargs={"autocommit": True},
            configure=_configure,
            timeout=self._pool_timeout,
            reconnect_timeout=self._reconnect_timeout,
            name=f"catgad-{self.schema}",
        )
        try:
            async with self._guard("open"):
                await pool.open(wait=True, timeout=self._connect_timeout)
                async with pool.connection() as conn:
                    await self._migrate(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._closing = False
        self._queue = collections.deque()
        self._wakeup = asyncio.Event()
        self._writers = [asyncio.create_task(self._write_loop()) for _ in range(self._writers_n)]

    async def _migrate(self, conn: Conn) -> None:
        """Create the schema when missing; two daemons starting at once take turns."""
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('catgad'), hashtext(%s))", (self.schema,)
            )
            for statement in (
                *self._sql.ddl,
                *coordination_ddl(self.schema),
                *process_index_ddl(self.schema),
            ):
                await conn.execute(statement, prepare=False)
            cur = await conn.execute(self._sql.lock_head)
            row = await cur.fetchone()
        have = 0 if row is None else int(row[1])
        if have > SCHEMA_VERSION:
            raise StoreError(
                f"postgres schema {self.schema!r} has version {have};"
                f" this catgad knows {SCHEMA_VERSION}"
            )

    async def close(self) -> None:
        pool = self._pool
        if pool is None or self._closing:
            return
        self._closing = True  # no new appends; the writers drain the queue, then stop
        self._wakeup.set()
        await asyncio.gather(*self._writers, return_exceptions=True)
        self._writers = []
        self._pool = None
        if self._checking is not None:
            self._checking.cancel()
            self._checking = None
        await pool.close()

    async def ping(self) -> None:
        await self._fetch("ping", "SELECT 1", ())

    # -- writing -----------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        *,
        expected_version: int | None,
        command_id: str,
    ) -> AppendResult:
        job = Job(stream, encode_events(stream, events), expected_version, command_id)
        refuse_nul(job)
        if self._pool is None or self._closing:
            raise Unavailable(_DEP, "the store is closed")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        self._wakeup.set()
        outcome = await future
        if isinstance(outcome, CatgadError):
            # one error object may answer a whole batch: each raise starts a fresh traceback
            raise outcome.with_traceback(None)
        if isinstance(outcome, Repeat):  # committed before we asked, so it is there to read
            first = await self._command_result(outcome.command_id, duplicate=True)
            if first is None:
                raise StoreError(f"command {outcome.command_id!r} vanished from the store")
            return first
        version, position = outcome
        first_version = version - len(job.records) + 1
        stored = [
            decode_event(r.body, stream, first_version + i, position + i)
            for i, r in enumerate(job.records)
        ]
        return AppendResult(stream, command_id, version, stored, False)

    async def _write_loop(self) -> None:
        """Take every append waiting (up to max_batch) into one transaction, until closed."""
        queue = self._queue
        while True:
            while not queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [queue.popleft() for _ in range(min(len(queue), self._max_batch))]
            try:
                outcomes = await self._commit([job for job, _ in batch])
            except (StoreError, Unavailable) as exc:
                outcomes = [exc] * len(batch)
            except Exception as exc:  # a bug: fail this batch, keep the writer
                outcomes = [StoreError(f"postgres writer: {exc!r}")] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():  # a cancelled caller: the write stands regardless
                    future.set_result(outcome)

    async def _commit(self, jobs: list[Job]) -> list[Outcome]:
        """Run one batch; repeated when that is sure to be safe (see the comments)."""
        pool = self._live_pool()
        unique_clashes = 0
        stale = self._pool_max  # dead pooled connections to skip, as in _fetch
        while True:
            async with self._guard("append"), pool.connection() as conn:
                writing = False
                try:
                    known = await self._read_known(conn, jobs)
                    plan = plan_batch(jobs, known)
                    writing = True
                    await self._write(conn, plan)
                    return plan.outcomes
                except psycopg.errors.UniqueViolation:
                    # only a writer ignoring the head lock causes one: decide again on
                    # fresh reads, which see its row (a version conflict, a re-send...)
                    await self._rollback(conn)
                    unique_clashes += 1
                    if unique_clashes >= _UNIQUE_RETRIES:
                        raise
                    continue
                except psycopg.OperationalError as exc:
                    # before the second round trip nothing could commit: safe to repeat
                    if writing or not stale or not connection_lost(exc):
                        await self._rollback(conn)
                        raise
                    stale -= 1
                except Exception:
                    await self._rollback(conn)
                    raise
            self._recheck_pool()

    async def _read_known(self, conn: Conn, jobs: list[Job]) -> Known:
        """First round trip: take the head lock, then read what the decisions depend on."""
        streams = list({j.stream: None for j in jobs})
        command_ids = [j.command_id for j in jobs]
        event_ids = [r.id for j in jobs for r in j.records]
        async with conn.pipeline():
            await conn.execute("BEGIN", prepare=False)
            head = await conn.execute(self._sql.lock_head)
            known = await conn.execute(self._sql.known, (streams, command_ids, event_ids))
            row = await head.fetchone()  # syncs the pipeline: one round trip for all three
            if row is None:
                raise StoreError(f"postgres schema {self.schema!r} has lost its head row")
            return known_from(int(row[0]), await known.fetchall())

    async def _write(self, conn: Conn, plan: Plan) -> None:
        """Second round trip: the accepted rows and the new head, then COMMIT."""
        async with conn.pipeline():
            await conn.execute(self._sql.write, plan.write_params())
            await conn.execute("COMMIT", prepare=False)

    @staticmethod
    async def _rollback(conn: Conn) -> None:
        with suppress(psycopg.Error):
            if not conn.closed:
                await conn.rollback()

    # -- reading -------------------------------------------------------------------

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> list[Envelope]:
        cap = None if limit is None else max(limit, 0)
        rows = await self._fetch("read", self._sql.read_stream, (stream, after, cap))
        return [decode_event(body, stream, v, p) for p, v, body in rows]

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        rows = await self._fetch("read_all", self._sql.read_all, (after, max(limit, 0)))
        return [decode_event(body, s, v, p) for p, s, v, body in rows]

    async def stream_version(self, stream: str) -> int:
        rows = await self._fetch("stream_version", self._sql.stream_version, (stream,))
        return int(rows[0][0])

    async def find_command(self, command_id: str) -> AppendResult | None:
        return await self._command_result(command_id, duplicate=False)

    async def _command_result(self, command_id: str, *, duplicate: bool) -> AppendResult | None:
        rows = await self._fetch("find_command", self._sql.command_result, (command_id,))
        if not rows:
            return None
        stream, version = rows[0][0], rows[0][1]
        events = [decode_event(body, stream, v, p) for _, _, p, v, body in rows if body is not None]
        return AppendResult(stream, command_id, version, events, duplicate)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        state = encode_state(snapshot.state).decode()
        params = (snapshot.stream, snapshot.version, state)
        await self._fetch("save_snapshot", self._sql.save_snapshot, params, rows=False)

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        rows = await self._fetch("load_snapshot", self._sql.load_snapshot, (stream,))
        return None if not rows else Snapshot(stream, rows[0][0], decode_state(rows[0][1]))

    # -- rewrite in place (catgad migrate): catgad/store/postgres_rewrite.py --------

    async def rewrite(self, events: Sequence[Envelope]) -> int:
        if not events:
            return 0
        async with self._guard("rewrite"), self._live_pool().connection() as conn:
            return await rewrite_events(conn, self.schema, events)

    # -- plumbing ------------------------------------------------------------------

    def _live_pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise Unavailable(_DEP, "the store is closed")
        return self._pool

    async def _fetch(
        self, what: str, sql: str, params: Sequence[object], *, rows: bool = True
    ) -> list[Row]:
        """One statement on a pooled connection (autocommit).

        Connections that died idle (the server restarted, an admin ended them) are no
        outage: the statement is repeated on the next one, at most once per pooled
        connection; a server that is really down fails at getting a connection instead.
        """
        pool = self._live_pool()
        for attempt in range(self._pool_max, -1, -1):
            async with self._guard(what), pool.connection() as conn:
                try:
                    cur = await conn.execute(sql, params)
                    return await cur.fetchall() if rows else []
                except psycopg.OperationalError as exc:
                    if not attempt or not connection_lost(exc):
                        raise
            self._recheck_pool()
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Bound the time, and turn psycopg's errors into ours (none leaves this module)."""
        try:
            async with asyncio.timeout(self._op_timeout):
                yield
        except TimeoutError as exc:
            self._recheck_pool()
            raise Unavailable(_DEP, f"{what}: no answer within {self._op_timeout:g} s") from exc
        except PoolClosed as exc:
            raise Unavailable(_DEP, "the store is closed") from exc
        except (PoolTimeout, TooManyRequests) as exc:
            raise Unavailable(
                _DEP, f"{what}: no connection within {self._pool_timeout:g} s ({exc})"
            ) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._recheck_pool()
            raise Unavailable(_DEP, f"{what}: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"postgres: {what}: {exc}") from exc

    def _recheck_pool(self) -> None:
        """After a connection died, test the idle ones too rather than fail once per each."""
        pool = self._pool
        if pool is None or (self._checking is not None and not self._checking.done()):
            return
        self._checking = asyncio.create_task(self._check(pool))

    @staticmethod
    async def _check(pool: AsyncConnectionPool[Conn]) -> None:
        with suppress(Exception):
            await pool.check()
