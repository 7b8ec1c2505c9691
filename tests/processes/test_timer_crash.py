"""Durable timers under faults, on real daemons and a shared SQLite file:

- 200 instances whose payment deadlines fall due while the daemon is killed (kill -9) and
  down: after the restart each fires exactly once, none before it was due, and each order
  is cancelled once;
- two daemons sharing the store: each timer fires once (one drives, the other stands by).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from catgad.processes.state import TIMER_FIRED, TIMER_SCHEDULED
from catgad.store.sqlite import SQLiteStore
from tests.helpers.daemon import REPO, Daemon
from tests.support.waiting import eventually

FULFILMENT = REPO / "config" / "examples" / "fulfilment.yaml"
pytestmark = pytest.mark.slow


def short_deadline(folder: Path, seconds: int) -> Path:
    """The fulfilment example with a payment deadline of `seconds`, and fast lease hand-over."""
    text = FULFILMENT.read_text().replace(
        "        after: {in: 24h, goto: expired}",
        f"        after: {{in: {seconds}s, goto: expired}}",
    )
    text += "\nruntime:\n  processes: {lease_ttl: 2, poll_interval: 0.05}\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fulfilment.yaml"
    path.write_text(text)
    return path


async def place(url: str, orders: list[str]) -> None:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(order: str) -> None:
            answer = await client.post(
                "/commands/PlaceOrder", json={"order_id": order, "total": 10}
            )
            assert answer.status_code == 201, answer.text

        await asyncio.gather(*(one(order) for order in orders))


async def decisions(db: Path, orders: list[str]) -> dict[str, list[Any]]:
    store = SQLiteStore(db)
    await store.open()
    try:
        return {o: await store.read(f"Process-Fulfilment-{o}") for o in orders}
    finally:
        await store.close()


async def cancellations(db: Path, orders: list[str]) -> dict[str, int]:
    store = SQLiteStore(db)
    await store.open()
    try:
        return {
            o: sum(e.type == "OrderCancelled" for e in await store.read(f"Order-{o}"))
            for o in orders
        }
    finally:
        await store.close()


def expired(client: httpx.Client) -> int:
    listed = client.get("/processes/Fulfilment", params={"state": "expired"}).json()
    return len(listed["instances"])


def check_fired_once(stored: dict[str, list[Any]]) -> None:
    for order, events in stored.items():
        scheduled = [e for e in events if e.type == TIMER_SCHEDULED]
        fired = [e for e in events if e.type == TIMER_FIRED]
        assert len(scheduled) == 1 and len(fired) == 1, (order, [e.type for e in events])
        due = float(scheduled[0].data["due"])
        assert fired[0].data["due"] == due
        assert float(fired[0].data["at"]) >= due, f"{order} fired before it was due"


def test_timers_due_while_down_fire_once_after_a_restart(tmp_path: Path) -> None:
    orders = [f"k{i}" for i in range(200)]
    daemon = Daemon(short_deadline(tmp_path / "cfg", 10), tmp_path / "d")
    with daemon:
        asyncio.run(place(daemon.url, orders))
        daemon.kill()
        before = asyncio.run(decisions(daemon.db_path, orders))
        fired = [o for o, events in before.items() if any(e.type == TIMER_FIRED for e in events)]
        assert not fired, f"placing outlasted the deadline: {fired[:5]} fired before the kill"
        last_due = max(
            float(e.data["due"])
            for events in before.values()
            for e in events
            if e.type == TIMER_SCHEDULED
        )
        # Waiting on the wall clock itself: every deadline passes while nobody runs.
        time.sleep(max(0.0, last_due - time.time()) + 0.5)
        daemon.start()
        with daemon.client() as client:
            eventually(lambda: expired(client) == len(orders), 60, "every order to expire")
    check_fired_once(asyncio.run(decisions(daemon.db_path, orders)))
    assert set(asyncio.run(cancellations(daemon.db_path, orders)).values()) == {1}


def test_two_daemons_on_one_store_fire_each_timer_once(tmp_path: Path) -> None:
    orders = [f"t{i}" for i in range(60)]
    config = short_deadline(tmp_path / "cfg", 3)
    first = Daemon(config, tmp_path / "a")
    second = Daemon(config, tmp_path / "b", env={"CATGAD_SQLITE_PATH": str(first.db_path)})
    with first, second:
        asyncio.run(place(first.url, orders[:30]))
        asyncio.run(place(second.url, orders[30:]))
        with second.client() as client:
            eventually(lambda: expired(client) == len(orders), 60, "every order to expire")
        driving = [d for d in (first, second) if "driving process instances" in d.logs()]
        assert len(driving) == 1, "one daemon drives the process at a time"
    check_fired_once(asyncio.run(decisions(first.db_path, orders)))
    assert set(asyncio.run(cancellations(first.db_path, orders)).values()) == {1}
