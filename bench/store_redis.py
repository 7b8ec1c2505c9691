"""Benchmark: the Redis store's appends per second against a raw redis-py client, in the same run.

    python -m bench.store_redis [--url redis://127.0.0.1:6379/0] [--aggregates 1000]
                                [--appends 20] [--repeat 3] [--pool 64] [--uvloop]

Workload (bench.store_common): `aggregates` concurrent tasks, one per
aggregate, each appending `appends` events one at a time (1 event per append)
with the expected version it knows (optimistic), awaiting each acknowledgement
before the next.

- raw: redis-py with hiredis, a BlockingConnectionPool of `pool` connections,
  and a bare Lua script run per append with EVALSHA: GET the aggregate's
  version key, compare, XADD the CloudEvents JSON (orjson) to the aggregate's
  stream, SET the version (the "Redis Lua append, 1000 aggs concurrent,
  pool 64" row of limits.md). No idempotency, no global order, no decoding.
- catgad: RedisStore.append (same pool size), which also checks the command
  id and event ids, assigns a gapless global position, records the command,
  and returns decoded envelopes; appends issued in the same loop turn are
  sent as one pipeline.
- catgad, ungrouped (here only, not in bench.stores): the same store sending
  each append alone (max_batch=1), up to `pool` at once, to show what
  grouping adds.

Each system runs `repeat` times, interleaved, on a fresh key prefix, and each
run ends by counting what it stored (XLEN of every raw stream; the catgad
store read back through read_all, positions 1..N): a miscount aborts the
benchmark. The prefixes are deleted afterwards. The ratio is the median of
per-repeat ratios against raw.
"""

from __future__ import annotations

import argparse
import sys
import uuid

import redis.asyncio as aioredis

from bench.store_common import (
    Run,
    System,
    cloudevent,
    drive,
    drive_store,
    interleave,
    print_table,
    progress_to_stderr,
    run_loop,
    stream,
    summarise,
)
from catgad.store.redis import DEFAULT_URL, RedisStore

RAW = "raw redis-py + Lua"
CATGAD = "catgad RedisStore"
UNGROUPED = "catgad, ungrouped"
POOL = 64
RAW_OMITS = (
    "The raw Lua script checks and bumps one version key and XADDs to the aggregate's stream:"
    " it keeps no command ids (no idempotent retry), does not check event ids for duplicates,"
    " assigns no global position, and its caller decodes nothing; catgad's append does all of"
    " these, and groups the appends of one loop turn into one pipeline."
)

RAW_APPEND = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
redis.call('XADD', KEYS[2], (v + 1) .. '-0', 'b', ARGV[2])
redis.call('SET', KEYS[1], v + 1)
return {1, v + 1}
"""


async def wipe(client: aioredis.Redis, prefix: str) -> None:
    async for key in client.scan_iter(match=prefix + "*", count=1000):
        await client.unlink(key)


async def server_version(url: str) -> str:
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("server")
        persistence = await client.info("persistence")
        # the durability the figures were measured at: AOF off means in memory until a snapshot
        aof = "AOF on" if persistence.get("aof_enabled") else "AOF off"
        return f"Redis {info['redis_version']} ({aof})"
    finally:
        await client.aclose()


async def run_raw(url: str, aggregates: int, appends: int, pool: int) -> Run:
    prefix = f"bench-raw:{uuid.uuid4().hex[:8]}:"
    client = aioredis.Redis.from_pool(
        aioredis.BlockingConnectionPool.from_url(url, max_connections=pool)
    )
    script = client.register_script(RAW_APPEND)
    try:

        async def one(n: int, v: int) -> None:
            keys = [f"{prefix}v:{stream(n)}", f"{prefix}s:{stream(n)}"]
            ok, version = await script(keys=keys, args=[v, cloudevent(n, v)])
            if not ok or version != v + 1:
                raise AssertionError(f"raw append {stream(n)}@{v} refused: at {version}")

        result = await drive(aggregates, appends, one)
        stored = 0
        for n in range(aggregates):
            stored += await client.xlen(f"{prefix}s:{stream(n)}")
        return result.verified(RAW, stored)
    finally:
        await wipe(client, prefix)
        await client.aclose()


async def run_catgad(url: str, aggregates: int, appends: int, pool: int, grouped: bool) -> Run:
    prefix = f"bench-catgad:{uuid.uuid4().hex[:8]}:"
    options = {} if grouped else {"max_batch": 1, "max_pipelines": pool}
    store = RedisStore(url, prefix=prefix, pool_size=pool, **options)
    await store.open()
    try:
        name = CATGAD if grouped else UNGROUPED
        return await drive_store(store, name, aggregates, appends, gapless=True)
    finally:
        await store.close()
        client = aioredis.Redis.from_url(url)
        await wipe(client, prefix)
        await client.aclose()


def systems(
    url: str, aggregates: int, appends: int, *, pool: int = POOL, extras: bool = False
) -> dict[str, System]:
    """Raw first (the baseline), then catgad; `extras` adds the ungrouped store."""
    out: dict[str, System] = {
        RAW: lambda: run_raw(url, aggregates, appends, pool),
        CATGAD: lambda: run_catgad(url, aggregates, appends, pool, grouped=True),
    }
    if extras:
        out[UNGROUPED] = lambda: run_catgad(url, aggregates, appends, pool, grouped=False)
    return out


async def bench(args: argparse.Namespace) -> None:
    version = await server_version(args.url)
    todo = systems(args.url, args.aggregates, args.appends, pool=args.pool, extras=True)
    runs = await interleave(todo, args.repeat, progress_to_stderr(""))
    print(
        f"\n{version}, {args.aggregates:,} aggregates x {args.appends} appends (1 event each), "
        f"pool {args.pool}, {'uvloop' if args.uvloop else 'asyncio'}, {args.repeat} repeats\n"
    )
    print_table(summarise(runs, RAW))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--aggregates", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=20, help="appends per aggregate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pool", type=int, default=POOL, help="connections, for both clients")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as `catgad run`")
    args = parser.parse_args(argv)
    run_loop(bench(args), args.uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
