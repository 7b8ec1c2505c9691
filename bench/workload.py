"""The Order workload every system in the benchmark runs, and how a run is measured.

Per order: CreateOrder -> PayOrder -> ShipOrder, one event each. The data is
deterministic (seeded), so every system appends exactly the same events.
`aggregates` orders are in play; `rounds` repeats the whole set with fresh
order ids (more orders, same shape). Concurrency is the number of orders in
flight at once: each worker takes an order and sends its commands one after
the other, as a client waiting for each acknowledgement would.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

COMMANDS_PER_ORDER = 3
EVENTS_PER_COMMAND = 1
SKUS = tuple(f"SKU-{n:04d}" for n in range(1, 201))

Progress = Callable[[int], None]  # called with the number of commands just completed


def no_progress(_: int) -> None:
    return None


class VerificationError(AssertionError):
    """A measured run did not leave exactly the expected events: its figures are void."""


@dataclass(frozen=True, slots=True)
class OrderSpec:
    order_id: str
    customer: str
    items: tuple[dict[str, Any], ...]
    tracking: str

    @property
    def total(self) -> int:
        return sum(int(i["qty"]) * int(i["price"]) for i in self.items)

    def commands(self) -> list[tuple[str, dict[str, Any]]]:
        """(command type, data) in the order they must run."""
        return [
            (
                "CreateOrder",
                {
                    "order_id": self.order_id,
                    "customer": self.customer,
                    "items": [dict(i) for i in self.items],
                },
            ),
            ("PayOrder", {"order_id": self.order_id, "amount": self.total}),
            ("ShipOrder", {"order_id": self.order_id, "tracking": self.tracking}),
        ]

    def event_types(self) -> list[str]:
        return ["OrderCreated", "OrderPaid", "OrderShipped"]


@dataclass(frozen=True, slots=True)
class Workload:
    aggregates: int = 1000
    rounds: int = 1
    concurrency: int = 64
    seed: int = 20240601

    @property
    def orders_total(self) -> int:
        return self.aggregates * self.rounds

    @property
    def expected_commands(self) -> int:
        return self.orders_total * COMMANDS_PER_ORDER

    @property
    def expected_events(self) -> int:
        return self.expected_commands * EVENTS_PER_COMMAND

    def orders(self) -> list[OrderSpec]:
        rng = random.Random(self.seed)
        out: list[OrderSpec] = []
        for r in range(self.rounds):
            for i in range(self.aggregates):
                items = tuple(
                    {
                        "sku": rng.choice(SKUS),
                        "qty": rng.randint(1, 5),
                        "price": rng.randint(100, 9999),
                    }
                    for _ in range(rng.randint(1, 3))
                )
                out.append(
                    OrderSpec(
                        order_id=f"o{r:02d}-{i:06d}",
                        customer=f"customer-{rng.randint(1, self.aggregates // 4 + 1):05d}",
                        items=items,
                        tracking=f"TRK{rng.randrange(10**9):09d}",
                    )
                )
        return out

    def steps(self) -> Iterator[list[tuple[OrderSpec, str, dict[str, Any]]]]:
        """Commands in the waves a set of `concurrency` clients produces them.

        Orders are taken `concurrency` at a time; each wave holds the next
        command of every order in flight (all creates, then all pays, then all
        ships). A synchronous baseline that batches runs one wave per batch.
        """
        orders = self.orders()
        for start in range(0, len(orders), self.concurrency):
            chunk = orders[start : start + self.concurrency]
            cmds = [o.commands() for o in chunk]
            for step in range(COMMANDS_PER_ORDER):
                yield [(o, *c[step]) for o, c in zip(chunk, cmds, strict=True)]


@dataclass(slots=True)
class Measurement:
    """One measured run of one system on the workload."""

    system: str  # "catgad engine", "catgad http", "raw sqlite3", "eventsourcing"
    variant: str  # how it was driven, e.g. "tx per batch of 64"
    synchronous: str
    commands: int
    events: int
    seconds: float
    latencies_ns: list[int] = field(default_factory=list, repr=False)
    verified_events: int = 0  # counted in the store after the run
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.system} | {self.variant}"

    @property
    def cmds_per_s(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ns, 50) / 1e6

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ns, 99) / 1e6


def percentile(values: Sequence[int], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered))))
    return float(ordered[rank - 1])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def count_whole_streams(
    path: Any, workload: Workload, *, table: str, stream: str, version: str
) -> int:
    """Events stored in a SQLite file, counted only if every order holds exactly 1..3;
    otherwise minus the number of whole orders, so a wrong run cannot pass for a right one."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        total = int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        whole = int(
            conn.execute(
                f"SELECT COUNT(*) FROM (SELECT COUNT(*) AS n, MIN({version}) AS lo, "
                f"MAX({version}) AS hi FROM {table} GROUP BY {stream}) "
                "WHERE n = 3 AND lo = 1 AND hi = 3"
            ).fetchone()[0]
        )
    finally:
        conn.close()
    return total if whole == workload.orders_total else -whole


def verify(m: Measurement, workload: Workload, counted: int, *, what: str = "events") -> None:
    """Raise unless the store holds exactly the expected number of events."""
    m.verified_events = counted
    if counted != workload.expected_events:
        raise VerificationError(
            f"{m.key} ({m.synchronous}): expected {workload.expected_events} {what} "
            f"in the store, found {counted}"
        )


Send = Callable[[str, dict[str, Any]], Awaitable[None]]
# Opens one worker's way to the system (say its own connection) for the whole run.
Sender = Callable[[], AbstractAsyncContextManager[Send]]


def shared(send: Send) -> Sender:
    """A Sender giving every worker the same `send`."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[Send]:
        yield send

    return opened


async def drive(
    workload: Workload, sender: Sender, progress: Progress = no_progress
) -> tuple[float, list[int]]:
    """Run the workload with `concurrency` workers; (seconds, latencies in ns).

    Every worker opens its sender before the clock starts, then takes the next
    order and sends its commands one at a time, timing each from the call to
    its acknowledgement. A send raises on failure, which ends the run.
    """
    queue = iter(workload.orders())
    latencies: list[int] = []
    clock = time.perf_counter_ns

    async def worker(send: Send) -> None:
        for order in queue:  # one shared iterator: each order goes to one worker
            for command_type, data in order.commands():
                t0 = clock()
                await send(command_type, data)
                latencies.append(clock() - t0)
            progress(COMMANDS_PER_ORDER)

    async with AsyncExitStack() as stack:
        sends = [
            await stack.enter_async_context(sender())
            for _ in range(min(workload.concurrency, workload.orders_total))
        ]
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for send in sends:
                group.create_task(worker(send))
        seconds = time.perf_counter() - started
    return seconds, latencies
