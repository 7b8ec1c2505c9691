"""Rough micro-benchmark: SQLite store appends/sec against raw sqlite3 writing the same rows.

Usage: python tests/store/bench_appends.py [--streams 1000] [--appends 20000] [--build]

The store: `streams` tasks, one per stream, each appending one event at a time
with its expected version until `appends` are done; every append is awaited
(acknowledged). Raw: the same rows executemany'd into the same events table in
transactions of `--raw-batch` rows (and of the store's mean batch, and of one
row), same WAL and synchronous setting, no commands table, no checks, no
asyncio. By default the envelopes are built and (for raw) encoded before the
clock starts; with --build both sides build each envelope (new id, timestamp)
inside the timed loop, as bench/raw_sqlite.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from catgad.envelope import Envelope
from catgad.store import sqlite_tables
from catgad.store.codec import encode_event
from catgad.store.sqlite import SQLiteStore, Synchronous
from catgad.store.sqlite_writer import Writer


def envelope(s: int, v: int) -> Envelope:
    return Envelope(type="Bench", data={"s": s, "v": v, "text": "some payload"})


async def bench_store(
    path: Path, sync: Synchronous, streams: int, appends: int, build: bool
) -> float:
    store = SQLiteStore(path, synchronous=sync)
    await store.open()
    per_stream = appends // streams
    given = (
        {} if build else {(s, v): envelope(s, v) for s in range(streams) for v in range(per_stream)}
    )

    async def writer(s: int) -> None:
        for v in range(per_stream):
            e = envelope(s, v) if build else given[s, v]
            await store.append(f"S-{s}", [e], expected_version=v, command_id=f"{s}-{v}")

    start = time.perf_counter()
    await asyncio.gather(*(writer(s) for s in range(streams)))
    elapsed = time.perf_counter() - start
    await store.close()
    return per_stream * streams / elapsed


def bench_raw(
    path: Path, sync: Synchronous, streams: int, appends: int, batch: int, build: bool
) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    conn.execute(sqlite_tables._SCHEMA[0])  # the same events table and indexes
    per_stream = appends // streams
    order = [(s, v) for v in range(per_stream) for s in range(streams)]

    def row(s: int, v: int) -> tuple[Any, ...]:
        r = encode_event(f"S-{s}", envelope(s, v))
        return (f"S-{s}", v + 1, r.id, r.type, r.time, f"{s}-{v}", r.body)

    rows = [] if build else [row(s, v) for s, v in order]
    start = time.perf_counter()
    for i in range(0, len(order), batch):
        chunk = [row(s, v) for s, v in order[i : i + batch]] if build else rows[i : i + batch]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sqlite_tables.INSERT_EVENT, chunk)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(order) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=20000)
    parser.add_argument("--raw-batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="best of; the machine may be busy")
    parser.add_argument("--build", action="store_true", help="build envelopes in the timing")
    parser.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    args = parser.parse_args()

    sizes: list[int] = []
    commit = Writer._commit

    def counting(self: Writer, conn: sqlite3.Connection, batch: list[Any]) -> None:
        sizes.append(len(batch))
        commit(self, conn, batch)

    Writer._commit = counting  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for sync in ("full", "normal"):
            ours, mean = 0.0, 0.0
            for n in range(args.rounds):
                sizes.clear()
                run = asyncio.run(
                    bench_store(
                        Path(tmp, f"s{n}-{sync}.db"), sync, args.streams, args.appends, args.build
                    )
                )
                if run > ours:
                    ours, mean = run, sum(sizes) / max(len(sizes), 1)
            # raw in batches of --raw-batch rows, of the store's mean batch, and of 1 row
            raw: dict[int, float] = {}
            for batch in dict.fromkeys((args.raw_batch, round(mean) or 1, 1)):
                count = args.appends if batch > 1 else min(args.appends, 2000)
                raw[batch] = max(
                    bench_raw(
                        Path(tmp, f"r{n}-{batch}-{sync}.db"),
                        sync,
                        args.streams,
                        count,
                        batch,
                        args.build,
                    )
                    for n in range(args.rounds)
                )
            print(f"synchronous={sync}: store {ours:,.0f} appends/s (mean batch {mean:.0f})")
            for batch, rate in raw.items():
                print(
                    f"    raw sqlite3, {batch:4} rows/txn: {rate:9,.0f} rows/s"
                    f" -> store {ours / rate:5.0%}"
                )


if __name__ == "__main__":
    main()
