"""Real daemons, killed: projections lose no event and apply none twice.

- kill -9 during live processing, under a command load: after the restart the
  read models (a SQLite table and a Redis hash that adds up, so a doubled
  event shows) equal the pure fold of the mapping over the stored events;
- kill -9 during a rebuild: the restarted daemon resumes the rebuild and swaps;
- two daemons on one store: one holds each projection; after kill -9 of the
  holder the other takes over from the checkpoint, with no gap and no double.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.projections.section import PROJECTIONS
from catgad.store.sqlite import SQLiteStore
from tests.helpers.daemon import ORDERS_YAML, Daemon
from tests.projections.test_crash_properties import oracle
from tests.support.waiting import eventually

WAIT = 60.0  # seconds a daemon may take to catch up

pytestmark = [pytest.mark.sqlite, pytest.mark.redis, pytest.mark.slow]
TABLES = ("orders", "customer_totals")


@pytest.fixture
def redis_env() -> Iterator[dict[str, str]]:
    from tests.servers.redis import server_url, unique_prefix, wipe

    url = server_url()
    prefix = unique_prefix()
    yield {"CATGAD_REDIS_URL": url, "CATGAD_REDIS_PREFIX": prefix}
    asyncio.run(wipe(url, prefix))


def read_all(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url: str | None = f"/read/{name}?limit=1000"
    while url:
        page = client.get(url).json()
        rows.extend(page["rows"])
        url = page["next"]
    return rows


def caught_up(client: httpx.Client, name: str) -> bool:
    status = client.get(f"/projections/{name}").json()
    return bool(
        status["status"] == "running" and status["lag"]["events"] == 0 and status["active_here"]
    )


def expected(daemon: Daemon) -> dict[str, list[dict[str, Any]]]:
    """The read models by the pure mapping over what the store holds."""
    config = load_config(ORDERS_YAML, env={**os.environ, **daemon.env})

    async def events() -> list[Envelope]:
        store = SQLiteStore(daemon.env["CATGAD_SQLITE_PATH"])
        await store.open()
        try:
            out: list[Envelope] = []
            while batch := await store.read_all(after=len(out), limit=5000):
                out.extend(batch)
            return out
        finally:
            await store.close()

    stored = asyncio.run(events())
    return {name: oracle(PROJECTIONS.of(config)[name], stored) for name in TABLES}


def load(daemon: Daemon, stop: threading.Event, sent: list[int]) -> None:
    """Create and pay orders until told to stop (or the daemon dies)."""
    with daemon.client(timeout=5) as client:
        while not stop.is_set():
            order_id = uuid.uuid4().hex[:10]
            qty = 1 + sent[0] % 3
            body = {"order_id": order_id, "customer": f"c{sent[0] % 7}",
                    "items": [{"sku": "s", "qty": qty, "price": 250}]}  # fmt: skip
            try:
                client.post("/commands/CreateOrder", json=body)
                client.post("/commands/PayOrder", json={"order_id": order_id, "amount": qty * 250})
            except httpx.TransportError:
                return
            sent[0] += 1


def test_kill_9_during_live_processing(tmp_path: Path, redis_env: dict[str, str]) -> None:
    daemon = Daemon(ORDERS_YAML, tmp_path, env=redis_env).start()
    try:
        stop, sent = threading.Event(), [0]
        threads = [threading.Thread(target=load, args=(daemon, stop, sent)) for _ in range(4)]
        for thread in threads:
            thread.start()
        eventually(lambda: sent[0] >= 150, WAIT, "150 orders")
        daemon.kill()
        stop.set()
        for thread in threads:
            thread.join()
        daemon.start()
        with daemon.client() as client:
            for name in TABLES:
                eventually(lambda n=name: caught_up(client, n), WAIT, f"{name} caught up")
            truth = expected(daemon)
            for name in TABLES:
                assert read_all(client, name) == truth[name], name
            assert sum(r["orders"] for r in truth["customer_totals"]) >= 150
    finally:
        daemon.stop()


def test_kill_9_during_a_rebuild(tmp_path: Path, redis_env: dict[str, str]) -> None:
    daemon = Daemon(ORDERS_YAML, tmp_path, env=redis_env)
    asyncio.run(_fill(daemon.env["CATGAD_SQLITE_PATH"], orders=40_000))
    daemon.start()
    try:
        with daemon.client() as client:
            for name in TABLES:
                eventually(lambda n=name: caught_up(client, n), 120, f"{name} caught up")
            before = {name: read_all(client, name) for name in TABLES}
            for name in TABLES:
                assert client.post(f"/projections/{name}/rebuild").status_code == 202

            def midway() -> bool:
                status = client.get("/projections/orders").json()
                return status["status"] == "rebuilding" and status["rebuild"]["position"] > 0

            eventually(midway, WAIT, "rebuild under way")
            during = client.get("/read/orders?limit=5").json()["rows"]
            assert during == before["orders"][:5]  # queries answer from the old model
        daemon.kill()
        daemon.start()
        with daemon.client() as client:
            status = client.get("/projections/orders").json()
            assert status["status"] in ("rebuilding", "running")
            for name in TABLES:
                eventually(lambda n=name: caught_up(client, n), 120, f"{name} rebuilt")
                assert read_all(client, name) == before[name], name
    finally:
        daemon.stop()


async def _fill(path: str, orders: int) -> None:
    """Stored events as the daemon would write them: created, then paid for a third."""
    store = SQLiteStore(path)
    await store.open()
    try:
        for start in range(0, orders, 500):
            appends = []
            for i in range(start, min(orders, start + 500)):
                created = Envelope(
                    "OrderCreated",
                    {"order_id": f"o{i}", "customer": f"c{i % 11}",
                     "items": [{"sku": "s", "qty": 1, "price": 100 + i % 5}]},
                )  # fmt: skip
                events = [created]
                if i % 3 == 0:
                    events.append(Envelope("OrderPaid", {"order_id": f"o{i}", "amount": 100}))
                appends.append(
                    store.append(f"Order-o{i}", events, expected_version=0, command_id=f"fill-{i}")
                )
            await asyncio.gather(*appends)
    finally:
        await store.close()


def test_two_daemons_one_consumer_and_failover(tmp_path: Path, redis_env: dict[str, str]) -> None:
    shared = {
        **redis_env,
        "CATGAD_SQLITE_PATH": str(tmp_path / "events.db"),
        "CATGAD_READ_SQLITE_PATH": str(tmp_path / "read.db"),
    }
    first = Daemon(ORDERS_YAML, tmp_path / "a", env=shared).start()
    second = Daemon(ORDERS_YAML, tmp_path / "b", env=shared).start()
    try:
        with first.client() as a, second.client() as b:
            for i in range(60):
                client = a if i % 2 else b
                body = {"order_id": f"o{i}", "customer": f"c{i % 4}",
                        "items": [{"sku": "s", "qty": 1, "price": 10}]}  # fmt: skip
                assert client.post("/commands/CreateOrder", json=body).status_code == 201
            for name in TABLES:
                statuses = [
                    a.get(f"/projections/{name}").json(),
                    b.get(f"/projections/{name}").json(),
                ]
                assert sum(s["active_here"] for s in statuses) == 1, statuses
                assert statuses[0]["owner"] == statuses[1]["owner"]
            holder = first if a.get("/projections/orders").json()["active_here"] else second
            other = second if holder is first else first
            eventually(lambda: all(caught_up(holder.client(), n) for n in TABLES), WAIT, "holder")
        holder.kill()
        with other.client() as client:
            for i in range(60, 90):
                body = {"order_id": f"o{i}", "customer": f"c{i % 4}",
                        "items": [{"sku": "s", "qty": 1, "price": 10}]}  # fmt: skip
                assert client.post("/commands/CreateOrder", json=body).status_code == 201
            for name in TABLES:  # the lease (10 s) lapses, then the survivor goes on
                eventually(lambda n=name: caught_up(client, n), 40, f"{name} taken over")
            truth = expected(other)
            for name in TABLES:
                assert read_all(client, name) == truth[name], name
            totals = read_all(client, "customer_totals")
            assert sum(r["orders"] for r in totals) == 90  # none lost, none twice
    finally:
        first.stop()
        second.stop()
