"""What the store benchmarks share: the workload, a run's figures, interleaving and the summary.

Workload (every store, raw client and catgad alike): `aggregates` concurrent
asyncio tasks, one per aggregate, each appending `appends` events one at a
time (one event per append) with the expected version it knows (0, 1, 2, ...),
awaiting each acknowledgement before the next. Latency is timed per append,
from call to acknowledgement; percentiles are nearest-rank over every append of
a run. Each system runs once per repeat, the systems' order rotated from one
repeat to the next so that noise from other work on the shared machine spreads
over all of them; a ratio is the median of the per-repeat ratios.

Every run ends by counting what its store holds, by a path independent of the
timed appends; a wrong count raises `Miscount`, which stops the benchmark
before any figure is reported.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from bench.report import checkout
from catgad.envelope import Envelope, new_id, now_rfc3339
from catgad.ids import event_id
from catgad.store.protocol import EventStore

T = TypeVar("T")
AIM = 0.70  # issue 4: each store at least 70% of its raw client


class Miscount(AssertionError):
    """A run stored other than exactly the events it appended: its figures mean nothing."""


@dataclass
class Run:
    appends: int
    seconds: float
    latencies: list[float] = field(repr=False)
    stored: int = 0  # what the independent count found, once verified

    @property
    def rate(self) -> float:
        return self.appends / self.seconds

    def pct(self, p: float) -> float:
        """Nearest-rank percentile `p` (0-100] of the append latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    def verified(self, system: str, stored: int) -> Run:
        if stored != self.appends:
            raise Miscount(f"{system} stored {stored:,} events, expected {self.appends:,}")
        self.stored = stored
        return self


One = Callable[[int, int], Awaitable[None]]  # (aggregate, expected version) -> appended
System = Callable[[], Awaitable[Run]]


async def drive(aggregates: int, appends: int, one: One) -> Run:
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


def stream(n: int) -> str:
    return f"A-{n}"


def envelope(n: int, v: int, *, foreign_id: bool = False) -> Envelope:
    """The event catgad appends for aggregate `n` at version `v`, as the engine makes it: its
    id derived from the command id, caused by that command. `foreign_id`: a fresh random id
    instead, as an import of events from elsewhere brings (the NATS store claims those)."""
    cid = command_id(n, v)
    return Envelope(
        type="Happened",
        data=payload(n, v),
        source="bench",
        id=new_id() if foreign_id else event_id(cid, 0),
        causationid=cid,
    )


def cloudevent(n: int, v: int) -> bytes:
    """The same event as the CloudEvents JSON a raw client writes (orjson, fresh id and time)."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": new_id(),
            "source": "bench",
            "type": "Happened",
            "subject": stream(n),
            "time": now_rfc3339(),
            "datacontenttype": "application/json",
            "data": payload(n, v),
        }
    )


def command_id(n: int, v: int) -> str:
    return f"{n}-{v}"


async def drive_store(
    store: EventStore,
    name: str,
    aggregates: int,
    appends: int,
    *,
    gapless: bool,
    foreign_ids: bool = False,
) -> Run:
    """The workload through a catgad store's append, then every event read back and counted
    (`gapless`: positions must also end at the count, as they do in Redis and PostgreSQL)."""

    async def one(n: int, v: int) -> None:
        await store.append(
            stream(n),
            [envelope(n, v, foreign_id=foreign_ids)],
            expected_version=v,
            command_id=command_id(n, v),
        )

    result = await drive(aggregates, appends, one)
    stored, after = 0, 0
    while batch := await store.read_all(after=after, limit=5000):
        stored += len(batch)
        after = batch[-1].position or 0
    if gapless and after != stored:
        raise Miscount(f"{name}: {stored:,} events read, but positions end at {after:,}")
    return result.verified(name, stored)


async def interleave(
    systems: dict[str, System], repeat: int, progress: Callable[[str], None]
) -> dict[str, list[Run]]:
    """Every system once per repeat, the order rotated each repeat; progress() after each run."""
    runs: dict[str, list[Run]] = {name: [] for name in systems}
    names = list(systems)
    for r in range(repeat):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            run = await systems[name]()
            runs[name].append(run)
            progress(
                f"repeat {r + 1}/{repeat}: {name:<22} {run.rate:>9,.0f} appends/s"
                f" ({run.stored:,} events verified)"
            )
    return runs


@dataclass
class Summary:
    """One system's runs, and its ratio to the baseline's runs of the same repeats."""

    name: str
    runs: list[Run]
    baseline: list[Run]

    @property
    def rates(self) -> list[float]:
        return [r.rate for r in self.runs]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def p50(self) -> float:
        return statistics.median(r.pct(50) for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.pct(99) for r in self.runs)

    @property
    def ratios(self) -> list[float]:
        return [x.rate / y.rate for x, y in zip(self.runs, self.baseline, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def stored(self) -> int:
        return self.runs[0].stored

    def spread(self) -> str:
        rates = self.rates
        if len(rates) == 1:
            return f"{rates[0]:,.0f}"
        return f"{statistics.median(rates):,.0f} [{min(rates):,.0f}-{max(rates):,.0f}]"


def summarise(runs: dict[str, list[Run]], baseline: str) -> list[Summary]:
    return [Summary(name, rs, runs[baseline]) for name, rs in runs.items()]


def print_table(summaries: list[Summary]) -> None:
    """The standalone modules' stdout table (bench.stores writes the full report)."""
    print(f"| {'system':<22} | {'appends/s median [min-max]':<28} |  p50 ms |  p99 ms | vs raw |")
    print(f"|{'-' * 24}|{'-' * 30}|---------|---------|--------|")
    for s in summaries:
        print(
            f"| {s.name:<22} | {s.spread():<28} | {s.p50:7.2f} | {s.p99:7.2f} | {s.ratio:5.2f}x |"
        )


def progress_to_stderr(prefix: str) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(f"  {prefix}{line}", file=sys.stderr, flush=True)

    return say


def run_loop(main: Coroutine[Any, Any, T], use_uvloop: bool) -> T:
    if use_uvloop:
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine() -> list[tuple[str, str]]:
    """Facts about the machine and client libraries, for the report."""
    from bench.report import cpu_model, package_version

    cpu, version = cpu_model(), package_version
    clients = ", ".join(
        f"{name} {version(name)}"
        for name in ("redis", "hiredis", "psycopg", "psycopg-pool", "nats-py", "orjson")
    )
    return [
        ("cores", str(os.cpu_count())),
        ("CPU", cpu),
        ("OS", platform.platform()),
        ("Python", sys.version.split()[0]),
        ("clients", clients),
        ("catgad", checkout()),
    ]
