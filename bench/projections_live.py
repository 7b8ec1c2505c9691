"""Live lag of projections under a steady append load: event time to applied, per event.

The store's append limit is measured first (64 concurrent appenders of
one-event commands for a few seconds); then appends are paced at half of it
while the example's `orders` (SQLite) and `customer_totals` (Redis)
projections run in the same process, woken by each append as the command
engine's hook wakes them in `catgad run`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from catgad.envelope import Envelope
from catgad.projections.metrics import ProjectionMetrics
from catgad.projections.progress import age_seconds

REPO = Path(__file__).resolve().parents[1]
ORDERS_YAML = REPO / "config" / "examples" / "orders.yaml"
CONCURRENCY = 64
_ids = itertools.count()


class Recorder(ProjectionMetrics):
    """Projection metrics that also keep every live event's lag, in seconds."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        super().__init__(CollectorRegistry())
        self.lags: list[float] = []  # from the append's acknowledgement
        self.ages: list[float] = []  # from the event's `time` (before the append)
        self.acked: dict[str, float] = {}
        self.recording = False

    def applied(self, projection: str, events: Sequence[Envelope], *, live: bool) -> None:
        super().applied(projection, events, live=live)
        if live and self.recording:
            now = time.time()
            for e in events:
                if e.type == "OrderCreated":
                    self.ages.append(age_seconds(e.time, now))
                    # applied before the appender heard back: no lag after the acknowledgement
                    self.lags.append(max(0.0, now - self.acked.get(e.id, now)))


def created() -> tuple[str, Envelope]:
    n = next(_ids)
    key = f"l{n}"
    data = {
        "order_id": key,
        "customer": f"c{n % 500}",
        "items": [{"sku": "s", "qty": 1, "price": 5}],
    }
    return f"Order-{key}", Envelope("OrderCreated", data)


async def append_limit(store: Any, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            stream, event = created()
            await store.append(stream, [event], expected_version=0, command_id=uuid.uuid4().hex)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


async def paced(
    store: Any, manager: Any, rate: float, seconds: float, acked: dict[str, float]
) -> int:
    sent = 0
    pending: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            stream, event = created()
            await store.append(stream, [event], expected_version=0, command_id=uuid.uuid4().hex)
            acked[event.id] = time.time()
            manager.notify()  # as Runtime's on_appended hook does

    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(rate * elapsed) - sent
        for _ in range(max(0, due)):
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        sent += max(0, due)
        await asyncio.sleep(0.002)
    await asyncio.gather(*pending)
    return sent


async def _measure(seconds: float) -> dict[str, Any]:
    from catgad.app.load import load_config
    from catgad.projections.manager import ProjectionManager
    from catgad.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="catgad-bench-lag-") as tmp:
        store = SQLiteStore(Path(tmp) / "events.db")  # synchronous full, as the example
        await store.open()
        limit = await append_limit(store, min(5.0, seconds))
        prefix = f"catgad-bench:{uuid.uuid4().hex[:12]}:"
        env = {
            **os.environ,
            "CATGAD_READ_SQLITE_PATH": str(Path(tmp) / "read.db"),
            "CATGAD_REDIS_PREFIX": prefix,
        }
        config = load_config(ORDERS_YAML, env=env)
        recorder = Recorder()
        manager = ProjectionManager(config, store, metrics=recorder)
        await manager.start()
        for runner in manager.runners.values():  # catch up with the limit run first
            await runner.caught_up(await _head(store))
        recorder.recording = True
        sent = await paced(store, manager, limit / 2, seconds, recorder.acked)
        head = await _head(store)
        for runner in manager.runners.values():
            await runner.caught_up(head)
        await manager.stop()
        await store.close()
        await wipe(env.get("CATGAD_REDIS_URL", "redis://127.0.0.1:6379/0"), prefix)
    lags = sorted(recorder.lags)
    ages = sorted(recorder.ages)
    return {
        "age_p50_ms": 1000 * _rank(ages, 0.50),
        "age_p99_ms": 1000 * _rank(ages, 0.99),
        "limit": limit,
        "rate": limit / 2,
        "events": sent,
        "p50_ms": 1000 * _rank(lags, 0.50),
        "p99_ms": 1000 * _rank(lags, 0.99),
        "max_ms": 1000 * lags[-1] if lags else 0.0,
    }


async def _head(store: Any) -> int:
    from catgad.projections.progress import head_position

    return await head_position(store)


async def wipe(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.unlink(*keys[i : i + 1000])
    finally:
        await client.aclose()


def _rank(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def measure(seconds: float) -> dict[str, Any]:
    import uvloop

    return uvloop.run(_measure(seconds))
