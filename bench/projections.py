"""Projection benchmark: catch-up (rebuild) throughput against raw scripts, and live lag.

    python -m bench.projections            # 1,000,000 events -> bench/RESULTS-projections.md
    python -m bench.projections --events 100000 --output -

Catch-up: a SQLite store holding `events` events (orders created, paid,
shipped: three events each) is projected by the example's `orders`
projection, through a rebuild (shadow table, then swap), into SQLite,
PostgreSQL and Redis; and, in the same run, by bench.projections_raw's
hand-written script for each target, same rows, same batching. Every run is a
child process of its own, so its peak RSS is its own; RSS is also sampled as
the run goes, to show that memory stays flat. Runs are interleaved per repeat.

Live lag: a fresh store takes appends at half the rate the store sustains
(measured first, 64 concurrent appenders of one-event commands), for
`--lag-seconds`, while the example's projections (`orders` in SQLite,
`customer_totals` in Redis) run live in the same process, woken by each
append as the command engine wakes them. Lag is event time to applied, per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import projections_live as live
from bench import projections_raw as raw

REPO = Path(__file__).resolve().parents[1]
ORDERS_YAML = REPO / "config" / "examples" / "orders.yaml"
PG_URL = os.environ.get("CATGAD_POSTGRES_URL", "postgresql://127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CATGAD_REDIS_URL", "redis://127.0.0.1:6379/0")
BATCH = 500


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the stored events ----------------------------------------------------------------------


async def fill(path: Path, events: int) -> None:
    """Orders created (2 items), paid and shipped: `events` events in the store at `path`."""
    from catgad.envelope import Envelope
    from catgad.store.sqlite import SQLiteStore

    store = SQLiteStore(path, synchronous="normal")
    await store.open()
    try:
        orders = events // 3
        for start in range(0, orders, 1000):
            appends = []
            for n in range(start, min(orders, start + 1000)):
                key = f"o{n:07d}"
                items: list[dict[str, Any]] = [
                    {"sku": f"s{n % 97}", "qty": 1 + n % 4, "price": 100 + n % 250},
                    {"sku": "gift", "qty": 1, "price": 99},
                ]
                total = sum(i["qty"] * i["price"] for i in items)
                appends.append(store.append(f"Order-{key}", [
                    Envelope("OrderCreated",
                             {"order_id": key, "customer": f"c{n % 5000}", "items": items}),
                    Envelope("OrderPaid", {"order_id": key, "amount": total}),
                    Envelope("OrderShipped", {"order_id": key, "tracking": f"T{n}"}),
                ], expected_version=0, command_id=f"fill-{key}"))  # fmt: skip
            await asyncio.gather(*appends)
    finally:
        await store.close()


def stored_events(directory: Path, events: int) -> Path:
    path = directory / f"orders-{events}.db"
    if not path.exists():
        print(f"writing {events:,} events to {path} ...", file=sys.stderr, flush=True)
        partial = path.with_suffix(".partial")
        for leftover in directory.glob(partial.name + "*"):
            leftover.unlink()
        asyncio.run(fill(partial, events))
        partial.rename(path)
        for suffix in ("-wal", "-shm"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
    return path


# -- one catch-up, in a child process --------------------------------------------------------


def projection(kind: str, where: str) -> Any:
    """The example's `orders` projection, aimed at `kind` (at `where`: a file, schema, prefix)."""
    import dataclasses

    from catgad.app.load import load_config
    from catgad.projections.section import PROJECTIONS

    env = {"CATGAD_READ_SQLITE_PATH": where, "CATGAD_REDIS_PROJECTIONS": "false"}
    orders = PROJECTIONS.of(load_config(ORDERS_YAML, env=env))["orders"]
    target = orders.target
    if kind == "postgres":
        target = dataclasses.replace(target, kind="postgres", url=PG_URL, schema=where, path=None)
    elif kind == "redis":
        target = dataclasses.replace(target, kind="redis", url=REDIS_URL, prefix=where, path=None)
    return dataclasses.replace(orders, target=target, batch=BATCH)


async def catgad_catch_up(store_path: str, kind: str, where: str) -> dict[str, Any]:
    from catgad.projections.runner import ProjectionRunner
    from catgad.projections.targets.factory import Targets
    from catgad.store.sqlite import SQLiteStore

    store = SQLiteStore(store_path, synchronous="normal")
    await store.open()
    p = projection(kind, where)
    targets = Targets({}, store)
    runner = ProjectionRunner(p, store, targets.build(p), owner="bench", source="bench")
    head = await _head(store)
    await runner.request_rebuild()
    samples: list[float] = []
    started = time.perf_counter()
    runner.start()
    sampler = asyncio.create_task(_sample(samples))
    await runner.caught_up(head)
    seconds = time.perf_counter() - started
    sampler.cancel()
    await runner.stop()
    await targets.close()
    await store.close()
    return {"events": head, "seconds": seconds, "rss_samples_mb": samples}


async def _head(store: Any) -> int:
    from catgad.projections.progress import head_position

    return await head_position(store)


async def _sample(samples: list[float]) -> None:
    while True:
        samples.append(round(rss_mb(), 1))
        await asyncio.sleep(0.5)


def child(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    if args.system == "catgad":
        import uvloop

        result = uvloop.run(catgad_catch_up(args.store, args.target, args.where))
    else:
        runs = {
            "sqlite": lambda: raw.raw_sqlite(args.store, args.where, BATCH),
            "postgres": lambda: raw.raw_postgres(args.store, PG_URL, args.where, BATCH),
            "redis": lambda: raw.raw_redis(args.store, REDIS_URL, args.where, BATCH),
        }
        count = runs[args.target]()
        result = {"events": count, "seconds": time.perf_counter() - started, "rss_samples_mb": []}
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(result))


def run_child(store: Path, system: str, kind: str, scratch: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    where = {
        "sqlite": str(scratch / f"{system}-{tag}.db"),
        "postgres": f"bench_{system}_{tag}",
        "redis": f"bench:{system}:{tag}:",
    }[kind]
    cmd = [sys.executable, "-m", "bench.projections", "--child", system, "--target", kind,
           "--store", str(store), "--where", where]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    finally:
        _cleanup(kind, where)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["events_per_second"] = result["events"] / result["seconds"]
    return result


def _cleanup(kind: str, where: str) -> None:
    if kind == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(where + suffix).unlink(missing_ok=True)
    elif kind == "postgres":
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{where}" CASCADE')
    else:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        batch = list(client.scan_iter(match=where + "*", count=5000))
        for i in range(0, len(batch), 5000):
            client.unlink(*batch[i : i + 5000])
        client.close()


# -- the whole run ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.projections", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--targets", default="sqlite,postgres,redis")
    parser.add_argument("--lag-seconds", type=float, default=20.0)
    parser.add_argument(
        "--data", default=str(Path(tempfile.gettempdir()) / "catgad-bench-projections")
    )
    parser.add_argument("--output", default=str(REPO / "bench" / "RESULTS-projections.md"))
    parser.add_argument("--child", choices=["catgad", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--where", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.system = args.child
        child(args)
        return 0
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    store = stored_events(data, args.events)
    args.load = [os.getloadavg()[0]]  # the machine is shared: the report says how busy it was
    kinds = [k.strip() for k in args.targets.split(",") if k.strip()]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="catgad-bench-read-") as scratch:
        for repeat in range(args.repeat):
            for kind in kinds:
                for system in ("raw", "catgad"):
                    result = run_child(store, system, kind, Path(scratch))
                    results.setdefault((kind, system), []).append(result)
                    print(f"[{repeat + 1}/{args.repeat}] {kind:8} {system:6} "
                          f"{result['events_per_second']:>10,.0f} events/s  "
                          f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    args.load.append(os.getloadavg()[0])
    lag = live.measure(args.lag_seconds) if args.lag_seconds > 0 else None
    if lag is not None:
        print(f"live lag: p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms "
              f"(age p99 {lag['age_p99_ms']:.1f} ms) at "
              f"{lag['rate']:,.0f} events/s (store limit {lag['limit']:,.0f})")  # fmt: skip
    text = report(args, results, lag)
    if args.output != "-":
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


NOTES = [
    "catgad folds a batch's changes per row before writing (catgad.projections.coalesce: an "
    "order created, paid and shipped within one batch is one upsert); the raw scripts write "
    "each event's change as it comes (PostgreSQL in pipeline mode). On SQLite, where writes "
    "are cheap, what is left is CPU on one interpreter lock. The catch-up reads the SQLite "
    "store as records (`read_records`: position, type and the decoded body, upcast where old;"
    " no envelope per event, and no decoding of the types the projection does not map), the "
    "mapping runs as one Python function generated per event type from the config's CEL "
    "(catgad.projections.mapgen; the closures of catgad.config.fastcel for what it does "
    "not inline, the general evaluator for anything unusual), and the cyclic GC no longer "
    "walks the startup heap (frozen when the first projection starts). The store read, the "
    "mapping and the write take turns rather than overlap: on this shared two-core machine, "
    "overlapping them (the next batch read and mapped while one is written) cost 25-35 % more"
    " CPU per event in lock handoffs and was slower.",
]


def report(args: argparse.Namespace, results: dict[tuple[str, str], list[dict[str, Any]]],
           lag: dict[str, Any] | None) -> str:  # fmt: skip
    import platform

    lines = [
        "# Projection benchmark results",
        "",
        "Generated by `python -m bench.projections`; method in the module docstring of "
        "[projections.py](projections.py). Do not edit by hand.",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- command: `python -m bench.projections --events {args.events} --repeat {args.repeat}"
        f" --lag-seconds {args.lag_seconds:g}"
        + ("" if args.targets == "sqlite,postgres,redis" else f" --targets {args.targets}")
        + "`",
        f"- machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}",
        "- load: shared with other work; 1-minute load average "
        + " → ".join(f"{x:.1f}" for x in getattr(args, "load", []))
        + " (before → after the catch-up runs)",
        f"- workload: {args.events:,} stored events (orders created, paid, shipped), the "
        f"example's `orders` projection, {BATCH} events per transaction",
        "",
        "## Catch-up (rebuild from scratch, then swap)",
        "",
        "| target | raw script events/s | catgad events/s | catgad / raw | aim ≥ 0.70 | "
        "catgad peak RSS MB | RSS first → last sample MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in dict.fromkeys(k for k, _ in results):
        raw_runs, ours = results[(kind, "raw")], results[(kind, "catgad")]
        raw_rate = statistics.median(r["events_per_second"] for r in raw_runs)
        rate = statistics.median(r["events_per_second"] for r in ours)
        ratio = statistics.median(
            o["events_per_second"] / r["events_per_second"]
            for o, r in zip(ours, raw_runs, strict=True)
        )
        samples = ours[-1]["rss_samples_mb"]
        flat = f"{samples[0]:.0f} → {samples[-1]:.0f}" if samples else "-"
        peak = max(r["peak_rss_mb"] for r in ours)
        met = "yes" if ratio >= 0.7 else "no"
        lines.append(f"| {kind} | {raw_rate:,.0f} | {rate:,.0f} | {ratio:.2f} | {met} | "
                     f"{peak:.0f} | {flat} |")  # fmt: skip
    lines += ["", *NOTES]
    if lag is not None:
        lines += [
            "",
            "## Live lag under a steady load",
            "",
            "Lag: from the append's acknowledgement (a command's 2xx) to the row in both read "
            "models; age: from the event's `time`, stamped before the append, so it includes the "
            "store's own commit latency (fsync, group commit) under this load. The "
            "projections run with the example's settings: busy, they gather each batch for up "
            "to `runtime.projections.linger` (0.02 s) or 128 appends (docs/projections.md).",
            "",
            "| store append limit events/s | load events/s | events | lag p50 ms | lag p99 ms | "
            "lag max ms | age p50 ms | age p99 ms | aim lag p99 < 100 ms |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {lag['limit']:,.0f} | {lag['rate']:,.0f} | {lag['events']:,} | "
            f"{lag['p50_ms']:.1f} | {lag['p99_ms']:.1f} | {lag['max_ms']:.1f} | "
            f"{lag['age_p50_ms']:.1f} | {lag['age_p99_ms']:.1f} | "
            f"{'yes' if lag['p99_ms'] < 100 else 'no'} |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
