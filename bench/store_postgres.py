"""Benchmark: PostgresStore appends/s against raw psycopg doing the same optimistic append.

    python -m bench.store_postgres [--url URL] [--aggregates 1000] [--appends 10]
                                   [--rounds 3] [--pool 16] [--writers 1]

Workload: `aggregates` concurrent asyncio tasks, one per aggregate (stream),
each appending `appends` events one at a time, 1 event per append, with the
expected version it knows (0, 1, 2, ...); every append is awaited before the
next. Latency is timed per append, from call to acknowledgement.

- catgad store: PostgresStore.append (group commit behind a head lock, command
  ids recorded for idempotency, gapless global positions), on a pool of
  `--pool` connections.
- raw psycopg: the same concurrency on an AsyncConnectionPool of the same size;
  each append takes a connection and runs one INSERT of the same CloudEvents
  JSON (encoded by the same codec) into a table with the same columns and
  indexes, a bigserial position, and UNIQUE (stream, version) as the
  optimistic check; autocommit, so the INSERT is its own transaction (one
  round trip, the cheapest a raw client can do). It records no command, keeps
  no gapless order and never batches, so it does strictly less bookkeeping.

Each round runs both on fresh schemas (dropped afterwards), interleaved; the
table shows the median round and the ratio is the median of per-round ratios.
Every run is checked: the store must hold exactly the appended events.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool

from catgad.envelope import Envelope
from catgad.store.codec import encode_event
from catgad.store.postgres import DEFAULT_URL, PostgresStore

RAW_TABLE = """CREATE TABLE {t} (
    position bigserial PRIMARY KEY, stream text NOT NULL, version integer NOT NULL,
    id text NOT NULL UNIQUE, type text NOT NULL, time text NOT NULL, command_id text NOT NULL,
    body json NOT NULL, UNIQUE (stream, version))"""
RAW_INSERT = (
    "INSERT INTO {t} (stream, version, id, type, time, command_id, body)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@dataclass
class Run:
    system: str
    appends: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.appends / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


def envelope(a: int, v: int) -> Envelope:
    return Envelope(type="Bench", data={"aggregate": a, "v": v, "text": "some payload"})


async def drive(
    name: str, aggregates: int, appends: int, append: Callable[[int, int], Awaitable[None]]
) -> Run:
    latencies: list[float] = []

    async def aggregate(a: int) -> None:
        for v in range(appends):
            started = time.perf_counter()
            await append(a, v)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(aggregate(a) for a in range(aggregates)))
    return Run(name, aggregates * appends, time.perf_counter() - started, latencies)


async def drop(url: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def bench_store(url: str, aggregates: int, appends: int, pool: int, writers: int) -> Run:
    schema = f"catgad_bench_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(url, schema=schema, pool_min=pool, pool_max=pool, writers=writers)
    await store.open()
    try:

        async def append(a: int, v: int) -> None:
            await store.append(
                f"Agg-{a}", [envelope(a, v)], expected_version=v, command_id=f"{a}-{v}"
            )

        run = await drive("catgad store", aggregates, appends, append)
        everything = await store.read_all(limit=aggregates * appends + 1)
        assert len(everything) == aggregates * appends, "the store lost or added events"
        assert [e.position for e in everything] == list(range(1, len(everything) + 1))
        return run
    finally:
        await store.close()
        await drop(url, schema)


async def bench_raw(url: str, aggregates: int, appends: int, pool_size: int) -> Run:
    schema = f"catgad_bench_raw_{uuid.uuid4().hex[:12]}"
    table = f'"{schema}".events'
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(RAW_TABLE.format(t=table))
    insert = RAW_INSERT.format(t=table)
    pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]] = AsyncConnectionPool(
        url, min_size=pool_size, max_size=pool_size, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    try:

        async def append(a: int, v: int) -> None:
            stream = f"Agg-{a}"
            r = encode_event(stream, envelope(a, v))
            row = (stream, v + 1, r.id, r.type, r.time, f"{a}-{v}", r.body.decode())
            async with pool.connection() as conn:
                await conn.execute(insert, row)

        run = await drive("raw psycopg", aggregates, appends, append)
        async with pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            row = await cur.fetchone()
        assert row is not None and row[0] == aggregates * appends, "raw lost or added rows"
        return run
    finally:
        await pool.close()
        await drop(url, schema)


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--aggregates", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=10, help="per aggregate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=16, help="connections, both systems")
    parser.add_argument("--writers", type=int, default=1, help="store writer tasks")
    args = parser.parse_args()

    stores: list[Run] = []
    raws: list[Run] = []
    for _ in range(args.rounds):
        raws.append(await bench_raw(args.url, args.aggregates, args.appends, args.pool))
        stores.append(
            await bench_store(args.url, args.aggregates, args.appends, args.pool, args.writers)
        )
    ratios = [s.rate / r.rate for s, r in zip(stores, raws, strict=True)]

    print(
        f"{args.aggregates} aggregates x {args.appends} appends (1 event each), "
        f"pool {args.pool}, {args.rounds} rounds, median round shown"
    )
    print(f"{'system':<14} {'appends/s':>10} {'min-max':>17} {'p50 ms':>8} {'p99 ms':>8}")
    for runs in (raws, stores):
        m = median_run(runs)
        spread = f"{min(r.rate for r in runs):,.0f}-{max(r.rate for r in runs):,.0f}"
        print(
            f"{m.system:<14} {m.rate:>10,.0f} {spread:>17} "
            f"{m.percentile(0.50):>8.1f} {m.percentile(0.99):>8.1f}"
        )
    print(f"store / raw: {statistics.median(ratios):.2f}x  (per round: "
          + ", ".join(f"{r:.2f}" for r in ratios) + ")")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
