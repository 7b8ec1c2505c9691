"""The SQLite store's one writer thread: group commit of queued jobs.

The thread waits for a job, takes the file's write lock (BEGIN IMMEDIATE),
then takes every job waiting in its queue by then (up to `max_batch`) and hands
them to the store's `apply` inside that transaction, then commits once: one
fsync for the whole batch. `apply` answers one outcome per
job (a result, or an exception for that job alone; each_in_savepoint runs jobs
one by one so a failed one is undone alone). Each caller's asyncio future is
resolved only after COMMIT returned, with one wake-up per event loop and batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from catgad.errors import StoreError, Unavailable

T = TypeVar("T")
_SAVEPOINT = "job"
_FIRST_PAUSE = 0.0001  # seconds between looks at another process's write lock, doubling
_MAX_PAUSE = 0.002
Apply = Callable[[sqlite3.Connection, list[Any]], list[object]]


def mapped(exc: sqlite3.Error) -> StoreError | Unavailable:
    """Our error for a sqlite3 one: a sqlite3 exception type never leaves the store."""
    if isinstance(exc, sqlite3.OperationalError):  # locked, busy, I/O, disk full
        return Unavailable("sqlite", str(exc))
    return StoreError(f"sqlite: {exc}")


def connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves; a connection
    # crosses threads only at close, after its own thread has stopped using it.
    return sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )


class _Job:
    __slots__ = ("future", "loop", "payload")

    def __init__(
        self, payload: object, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        self.payload = payload
        self.loop = loop
        self.future = future


def each_in_savepoint(
    conn: sqlite3.Connection, items: list[T], fn: Callable[[sqlite3.Connection, T], object]
) -> list[object]:
    """Run fn on each item in its own savepoint: a refusal (an exception) undoes that item only.

    A sqlite3.Error propagates: the connection is in doubt, the batch fails.
    """
    outcomes: list[object] = []
    for item in items:
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            outcome = fn(conn, item)
        except sqlite3.IntegrityError as exc:  # a constraint refused this job alone
            conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            outcome = mapped(exc)
        except sqlite3.Error:
            raise
        except Exception as exc:  # this job's refusal (or bug) must not sink the others
            conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            outcome = exc
        conn.execute(f"RELEASE {_SAVEPOINT}")
        outcomes.append(outcome)
    return outcomes


def _settle(pairs: list[tuple[asyncio.Future[Any], object]]) -> None:
    for future, outcome in pairs:
        if future.done():  # the caller was cancelled; the write stands regardless
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class Writer:
    """Owns the writing connection; `prepare` runs on it once, before `apply` sees any job."""

    def __init__(
        self,
        path: str,
        busy_timeout_ms: int,
        max_batch: int,
        prepare: Callable[[sqlite3.Connection], None],
        apply: Apply,
    ) -> None:
        self._path = path
        self._busy_ms = busy_timeout_ms
        self._max_batch = max_batch
        self._prepare = prepare
        self._apply = apply
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # makes "accepting?" and "enqueue" one step
        self._accepting = False
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name="catgad-sqlite-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._accepting and self._thread.is_alive()

    def submit(self, payload: object, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """The future of `payload`'s outcome, resolved on `loop` once committed."""
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if not self._accepting:
                raise Unavailable("sqlite", "the store is closed")
            self._queue.put(_Job(payload, loop, future))
        return future

    def stop(self) -> None:
        """Jobs queued before this still run; `done` resolves when the thread has ended."""
        with self._lock:
            if self._accepting:
                self._accepting = False
                self._queue.put(None)

    def _main(self) -> None:
        try:
            conn = connect(self._path, self._busy_ms)
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            self.ready.set_exception(mapped(exc))
        except BaseException as exc:
            self.ready.set_exception(exc)
        else:
            # BEGIN IMMEDIATE waits in _begin; no statement after it in a transaction waits
            conn.execute("PRAGMA busy_timeout = 0")
            with self._lock:
                self._accepting = True
            self.ready.set_result(None)
            try:
                self._serve(conn)
            finally:
                with self._lock:
                    self._accepting = False
                self._fail_queued()
                conn.close()
        self.done.set_result(None)

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._commit(conn, job):
                return

    def _take_queued(self, batch: list[_Job]) -> bool:
        """Add the jobs waiting in the queue to `batch` (up to max_batch); True at the stop."""
        while len(batch) < self._max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return False
            if job is None:
                return True
            batch.append(job)
        return False

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting for another process's write lock in short steps.

        SQLite's own busy handler sleeps 1, 2, 5, 10, ... ms between tries: with several
        processes writing one file (`catgad run --workers`, replicas) each commit of the
        others left the lock free for milliseconds while a writer slept. Here the writer
        looks again after 0.1 ms, doubling to at most 2 ms, within `busy_timeout_ms`.
        """
        pause = _FIRST_PAUSE
        deadline = 0.0
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                now = time.monotonic()
                deadline = deadline or now + self._busy_ms / 1000
                if now + pause > deadline:
                    raise
            time.sleep(pause)  # the writer's own thread: nothing else waits on it
            pause = min(pause * 2, _MAX_PAUSE)

    def _commit(self, conn: sqlite3.Connection, first: _Job) -> bool:
        """Commit `first` with every job queued by the time the write lock is held; True when
        the stop was among them (after this commit, nothing more)."""
        batch = [first]
        stopping = False
        outcomes: list[object]
        try:
            self._begin(conn)
            # taken once the lock is held: what came while another process held it (workers,
            # replicas) joins this transaction rather than wait for the next
            stopping = self._take_queued(batch)
            try:
                outcomes = self._apply(conn, [job.payload for job in batch])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
        except sqlite3.Error as exc:
            # the whole transaction is gone: every job in it failed, none is acknowledged
            outcomes = [mapped(exc) for _ in batch]
        except Exception as exc:  # a bug in apply: fail the batch, keep the thread
            outcomes = [StoreError(f"sqlite writer: {exc!r}") for _ in batch]
        self._resolve(batch, outcomes)
        return stopping

    @staticmethod
    def _resolve(batch: list[_Job], outcomes: list[object]) -> None:
        # one wake-up per event loop and batch rather than one per job
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
        for job, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(job.loop, []).append((job.future, outcome))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, pairs)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _fail_queued(self) -> None:
        batch: list[_Job] = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                batch.append(job)
        self._resolve(batch, [Unavailable("sqlite", "the store is closed") for _ in batch])
