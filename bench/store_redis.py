"""Benchmark: the Redis store's appends per second against a raw redis-py client, in the same run.

    python -m bench.store_redis [--url redis://127.0.0.1:6379/0] [--aggregates 1000]
                                [--appends 20] [--repeat 3] [--pool 64] [--uvloop]

Workload: `aggregates` concurrent tasks, one per aggregate, each appending
`appends` events one at a time (1 event per append) with the expected version
it knows (optimistic), awaiting each acknowledgement before the next.

- raw: redis-py with hiredis, a BlockingConnectionPool of `pool` connections,
  and a bare Lua script run per append with EVALSHA: GET the aggregate's
  version key, compare, XADD the CloudEvents JSON (orjson) to the aggregate's
  stream, SET the version (the "Redis Lua append, 1000 aggs concurrent,
  pool 64" row of limits.md). No idempotency, no global order, no decoding.
- catgad: RedisStore.append (same pool size), which also checks the command
  id and event ids, assigns a gapless global position, records the command,
  and returns decoded envelopes; appends issued in the same loop turn are
  sent as one pipeline.
- catgad, ungrouped: the same store sending each append alone (max_batch=1),
  up to `pool` at once, to show what grouping adds.

Each system runs `repeat` times, interleaved, on a fresh key prefix, and each
run ends by counting what it stored (a miscount aborts the benchmark); the
prefixes are deleted afterwards. Latency is per append, call to answer;
percentiles are nearest-rank. The ratio is the median of per-repeat ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import redis.asyncio as aioredis

from catgad.envelope import Envelope, new_id, now_rfc3339
from catgad.store.redis import DEFAULT_URL, RedisStore

RAW_APPEND = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
redis.call('XADD', KEYS[2], (v + 1) .. '-0', 'b', ARGV[2])
redis.call('SET', KEYS[1], v + 1)
return {1, v + 1}
"""


@dataclass
class Run:
    appends: int
    seconds: float
    latencies: list[float] = field(repr=False)

    @property
    def rate(self) -> float:
        return self.appends / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


async def drive(aggregates: int, appends: int, one: Callable[[int, int], Awaitable[None]]) -> Run:
    """`aggregates` tasks, each awaiting `appends` calls of one(aggregate, version) in turn."""
    latencies: list[float] = []

    async def aggregate(n: int) -> None:
        for v in range(appends):
            t = time.perf_counter()
            await one(n, v)
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(aggregate(n) for n in range(aggregates)))
    return Run(aggregates * appends, time.perf_counter() - started, latencies)


def payload(n: int, v: int) -> dict[str, object]:
    return {"order_id": f"o{n}", "seq": v, "items": [{"sku": "SKU-0001", "qty": 2, "price": 450}]}


async def wipe(client: aioredis.Redis, prefix: str) -> None:
    async for key in client.scan_iter(match=prefix + "*", count=1000):
        await client.unlink(key)


async def run_raw(url: str, aggregates: int, appends: int, pool: int) -> Run:
    prefix = f"bench-raw:{uuid.uuid4().hex[:8]}:"
    client = aioredis.Redis.from_pool(
        aioredis.BlockingConnectionPool.from_url(url, max_connections=pool)
    )
    script = client.register_script(RAW_APPEND)
    try:

        async def one(n: int, v: int) -> None:
            body = orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": new_id(),
                    "source": "bench",
                    "type": "Happened",
                    "subject": f"A-{n}",
                    "time": now_rfc3339(),
                    "datacontenttype": "application/json",
                    "data": payload(n, v),
                }
            )
            keys = [f"{prefix}v:A-{n}", f"{prefix}s:A-{n}"]
            ok, version = await script(keys=keys, args=[v, body])
            if not ok or version != v + 1:
                raise AssertionError(f"raw append A-{n}@{v} refused: at {version}")

        result = await drive(aggregates, appends, one)
        stored = 0
        for n in range(aggregates):
            stored += await client.xlen(f"{prefix}s:A-{n}")
        if stored != result.appends:
            raise AssertionError(f"raw stored {stored} events, expected {result.appends}")
        return result
    finally:
        await wipe(client, prefix)
        await client.aclose()


async def run_catgad(url: str, aggregates: int, appends: int, pool: int, grouped: bool) -> Run:
    prefix = f"bench-catgad:{uuid.uuid4().hex[:8]}:"
    options = {} if grouped else {"max_batch": 1, "max_pipelines": pool}
    store = RedisStore(url, prefix=prefix, pool_size=pool, **options)
    await store.open()
    try:

        async def one(n: int, v: int) -> None:
            event = Envelope(type="Happened", data=payload(n, v), source="bench")
            await store.append(f"A-{n}", [event], expected_version=v, command_id=f"{n}-{v}")

        result = await drive(aggregates, appends, one)
        stored, after = 0, 0
        while batch := await store.read_all(after=after, limit=5000):
            stored += len(batch)
            after = batch[-1].position or 0
        if stored != result.appends or after != result.appends:
            raise AssertionError(f"catgad stored {stored} events, expected {result.appends}")
        return result
    finally:
        await store.close()
        client = aioredis.Redis.from_url(url)
        await wipe(client, prefix)
        await client.aclose()


async def main(args: argparse.Namespace) -> None:
    systems: dict[str, Callable[[], Awaitable[Run]]] = {
        "raw redis-py + Lua": lambda: run_raw(args.url, args.aggregates, args.appends, args.pool),
        "catgad RedisStore": lambda: run_catgad(
            args.url, args.aggregates, args.appends, args.pool, grouped=True
        ),
        "catgad, ungrouped": lambda: run_catgad(
            args.url, args.aggregates, args.appends, args.pool, grouped=False
        ),
    }
    runs: dict[str, list[Run]] = {name: [] for name in systems}
    names = list(systems)
    for r in range(args.repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            run = await systems[name]()
            runs[name].append(run)
            print(f"  repeat {r + 1}: {name:<20} {run.rate:>9,.0f} appends/s", file=sys.stderr)
    raw = runs[names[0]]
    print(
        f"\n{args.aggregates:,} aggregates x {args.appends} appends (1 event each), "
        f"pool {args.pool}, {'uvloop' if args.uvloop else 'asyncio'}, {args.repeat} repeats\n"
    )
    print(f"| {'system':<20} | {'appends/s median [min-max]':<28} |  p50 ms |  p99 ms | vs raw |")
    print(f"|{'-' * 22}|{'-' * 30}|---------|---------|--------|")
    for name, rs in runs.items():
        rates = [x.rate for x in rs]
        spread = f"{statistics.median(rates):,.0f} [{min(rates):,.0f}-{max(rates):,.0f}]"
        ratio = statistics.median(x.rate / y.rate for x, y in zip(rs, raw, strict=True))
        p50 = statistics.median(x.pct(50) for x in rs)
        p99 = statistics.median(x.pct(99) for x in rs)
        print(f"| {name:<20} | {spread:<28} | {p50:7.2f} | {p99:7.2f} | {ratio:5.2f}x |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--aggregates", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=20, help="appends per aggregate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pool", type=int, default=64, help="connections, for both clients")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as `catgad run`")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
