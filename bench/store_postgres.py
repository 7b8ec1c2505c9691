"""Benchmark: PostgresStore appends/s against raw psycopg doing the same optimistic append.

    python -m bench.store_postgres [--url URL] [--aggregates 1000] [--appends 20]
                                   [--repeat 3] [--pool 16] [--writers 1] [--uvloop]

Workload (bench.store_common): `aggregates` concurrent asyncio tasks, one per
aggregate (stream), each appending `appends` events one at a time, 1 event
per append, with the expected version it knows (0, 1, 2, ...); every append is
awaited before the next. Latency is timed per append, from call to
acknowledgement.

- catgad store: PostgresStore.append (group commit behind a head lock, command
  ids recorded for idempotency, gapless global positions), on a pool of
  `--pool` connections.
- raw psycopg: the same concurrency on an AsyncConnectionPool of the same size;
  each append takes a connection and runs one INSERT of the same CloudEvents
  JSON (encoded by the same codec) into a table with the same columns and
  indexes, a bigserial position, and UNIQUE (stream, version) as the
  optimistic check; autocommit, so the INSERT is its own transaction (one
  round trip, the cheapest a raw client can do: an explicit BEGIN/COMMIT
  around it would cost two more). It records no command, keeps no gapless
  order and never batches, so it does strictly less bookkeeping.

Each repeat runs both on fresh schemas (dropped afterwards), interleaved; the
ratio is the median of per-repeat ratios. Every run is checked: the store must
hold exactly the appended events (count(*) of the raw table; the catgad store
read back through read_all, positions 1..N), or the benchmark aborts.
"""

from __future__ import annotations

import argparse
import sys
import uuid

import psycopg
from psycopg_pool import AsyncConnectionPool

from bench.store_common import (
    Run,
    System,
    command_id,
    drive,
    drive_store,
    envelope,
    interleave,
    print_table,
    progress_to_stderr,
    run_loop,
    stream,
    summarise,
)
from catgad.store.codec import encode_event
from catgad.store.postgres import DEFAULT_URL, PostgresStore

RAW = "raw psycopg INSERT"
CATGAD = "catgad PostgresStore"
POOL = 16
RAW_OMITS = (
    "The raw INSERT relies on UNIQUE (stream, version) alone: it records no command id"
    " (no idempotent retry), keeps no gapless global order (a bigserial may skip), takes no"
    " lock and never batches, and its caller decodes nothing back; catgad's append records"
    " the command, assigns gapless positions behind a head lock with group commit, and"
    " returns decoded envelopes. Both encode the event with catgad's codec."
)

RAW_TABLE = """CREATE TABLE {t} (
    position bigserial PRIMARY KEY, stream text NOT NULL, version integer NOT NULL,
    id text NOT NULL UNIQUE, type text NOT NULL, time text NOT NULL, command_id text NOT NULL,
    body json NOT NULL, UNIQUE (stream, version))"""
RAW_INSERT = (
    "INSERT INTO {t} (stream, version, id, type, time, command_id, body)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


async def drop(url: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def server_version(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        shown: list[str] = []
        for setting in ("server_version", "synchronous_commit", "fsync"):
            cur = await conn.execute(f"SHOW {setting}")
            row = await cur.fetchone()
            shown.append(str(row[0]).split()[0] if row else "?")
    # durability decides what a commit costs, so it belongs beside the figures
    return f"PostgreSQL {shown[0]} (synchronous_commit {shown[1]}, fsync {shown[2]})"


async def run_catgad(url: str, aggregates: int, appends: int, pool: int, writers: int) -> Run:
    schema = f"catgad_bench_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(url, schema=schema, pool_min=pool, pool_max=pool, writers=writers)
    await store.open()
    try:
        return await drive_store(store, CATGAD, aggregates, appends, gapless=True)
    finally:
        await store.close()
        await drop(url, schema)


async def run_raw(url: str, aggregates: int, appends: int, pool_size: int) -> Run:
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

        async def one(n: int, v: int) -> None:
            r = encode_event(stream(n), envelope(n, v))
            row = (stream(n), v + 1, r.id, r.type, r.time, command_id(n, v), r.body.decode())
            async with pool.connection() as conn:
                await conn.execute(insert, row)

        result = await drive(aggregates, appends, one)
        async with pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            row = await cur.fetchone()
        stored = row[0] if row and isinstance(row[0], int) else -1
        return result.verified(RAW, stored)
    finally:
        await pool.close()
        await drop(url, schema)


def systems(
    url: str, aggregates: int, appends: int, *, pool: int = POOL, writers: int = 1
) -> dict[str, System]:
    """Raw first (the baseline), then catgad."""
    return {
        RAW: lambda: run_raw(url, aggregates, appends, pool),
        CATGAD: lambda: run_catgad(url, aggregates, appends, pool, writers),
    }


async def bench(args: argparse.Namespace) -> None:
    version = await server_version(args.url)
    todo = systems(args.url, args.aggregates, args.appends, pool=args.pool, writers=args.writers)
    runs = await interleave(todo, args.repeat, progress_to_stderr(""))
    print(
        f"\n{version}, {args.aggregates:,} aggregates x {args.appends} appends (1 event each), "
        f"pool {args.pool}, {args.writers} writer(s), {'uvloop' if args.uvloop else 'asyncio'}, "
        f"{args.repeat} repeats\n"
    )
    print_table(summarise(runs, RAW))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--aggregates", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=20, help="appends per aggregate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pool", type=int, default=POOL, help="connections, both systems")
    parser.add_argument("--writers", type=int, default=1, help="store writer tasks")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as `catgad run`")
    args = parser.parse_args(argv)
    run_loop(bench(args), args.uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
