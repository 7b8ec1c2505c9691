"""The SQLite store's writer thread (catgad.store.sqlite_writer): group commit.

Another process holding the file's write lock (a second worker, a replica) makes the
writer wait in BEGIN IMMEDIATE; the appends submitted meanwhile join the transaction
it then opens, rather than each wait for a lock of its own."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from catgad.store.sqlite_writer import Writer, connect


class Recorder:
    """An `apply` that writes one row per job and records each transaction's jobs."""

    def __init__(self) -> None:
        self.transactions: list[list[Any]] = []

    def prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS jobs (payload TEXT)")

    def apply(self, conn: sqlite3.Connection, payloads: list[Any]) -> list[object]:
        conn.executemany("INSERT INTO jobs VALUES (?)", [(p,) for p in payloads])
        self.transactions.append(list(payloads))
        return list(payloads)


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


async def test_jobs_queued_while_another_process_holds_the_lock_commit_together(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "w.db")
    recorder = Recorder()
    writer = Writer(path, 10_000, 100, recorder.prepare, recorder.apply)
    writer.start()
    await asyncio.wrap_future(writer.ready)
    loop = asyncio.get_running_loop()
    other = connect(path, 10_000)  # another process's connection, as far as SQLite knows
    other.execute("BEGIN IMMEDIATE")  # it holds the write lock
    try:
        first = writer.submit("first", loop)
        # taken off the queue: the writer now waits for the lock
        await until(writer._queue.empty, "the writer took the first job")
        rest = [writer.submit(name, loop) for name in ("second", "third")]
    finally:
        other.execute("COMMIT")  # the lock comes free
        other.close()
    assert await first == "first"
    assert await asyncio.gather(*rest) == ["second", "third"]
    assert recorder.transactions == [["first", "second", "third"]]  # one commit, one fsync
    writer.stop()
    await asyncio.wrap_future(writer.done)
    check = sqlite3.connect(path)
    assert [row[0] for row in check.execute("SELECT payload FROM jobs")] == [
        "first",
        "second",
        "third",
    ]
    check.close()


async def test_a_stop_queued_behind_jobs_lets_them_commit_first(tmp_path: Path) -> None:
    recorder = Recorder()
    writer = Writer(str(tmp_path / "w.db"), 10_000, 100, recorder.prepare, recorder.apply)
    writer.start()
    await asyncio.wrap_future(writer.ready)
    loop = asyncio.get_running_loop()
    pending = [writer.submit(n, loop) for n in ("a", "b")]
    writer.stop()
    assert await asyncio.gather(*pending) == ["a", "b"]
    await asyncio.wrap_future(writer.done)
    assert [job for batch in recorder.transactions for job in batch] == ["a", "b"]
