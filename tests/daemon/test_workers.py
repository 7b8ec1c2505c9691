"""`catgad run --workers N`: several processes on one address, one store, stopped by one signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers.daemon import ORDERS_YAML, Daemon, edited_example, run_cli
from tests.support.waiting import eventually

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]

COUNTER_YAML = """\
catgad: 1
service:
  name: counters
  listen: ${CATGAD_LISTEN:-127.0.0.1:8080}
store:
  kind: sqlite
  path: ${CATGAD_SQLITE_PATH:-counters.db}
aggregates:
  Counter:
    id: counter_id
    initial: {count: 0}
    on:
      Incremented:
        set: {count: data.count}
commands:
  Increment:
    aggregate: Counter
    schema:
      type: object
      required: [counter_id]
      properties:
        counter_id: {type: string}
    emit:
      - event: Incremented
        data:
          counter_id: data.counter_id
          count: state.count + 1
events:
  Incremented:
    version: 1
    schema:
      type: object
      required: [counter_id, count]
      properties:
        counter_id: {type: string}
        count: {type: integer}
"""


def order(order_id: str) -> dict[str, object]:
    return {"order_id": order_id, "customer": "c", "items": [{"sku": "s", "qty": 1, "price": 7}]}


def worker_of(response: httpx.Response) -> str:
    """The worker that answered: its request ids start with its pid (catgad.http.problems)."""
    return response.headers["x-request-id"].split("-")[0]


def worker_pids(daemon: Daemon) -> list[int]:
    for line in daemon.logs().splitlines():
        if line.startswith("{") and '"workers started"' in line:
            return [int(pid) for pid in orjson.loads(line)["pids"]]
    raise AssertionError(f"no 'workers started' line:\n{daemon.logs()}")


def one_client_per_worker(url: str, workers: int) -> dict[str, httpx.Client]:
    """A keep-alive connection to each worker (the kernel picks one per new connection)."""
    clients: dict[str, httpx.Client] = {}
    for _ in range(200):
        if len(clients) == workers:
            return clients
        client = httpx.Client(base_url=url, limits=httpx.Limits(max_connections=1), timeout=30)
        who = worker_of(client.get("/healthz"))
        if who in clients:
            client.close()
        else:
            clients[who] = client
    for client in clients.values():
        client.close()
    raise AssertionError(f"200 connections reached only {len(clients)} of {workers} workers")


async def test_workers_all_serve_and_sigterm_stops_all_after_in_flight_commands(
    tmp_path: Path,
) -> None:
    daemon = Daemon(ORDERS_YAML, tmp_path, args=["--workers", "2"], ready_timeout=90).start()
    pids = worker_pids(daemon)
    assert len(pids) == 2
    acked: list[str] = []
    seen: set[str] = set()
    unexpected: list[str] = []
    enough = asyncio.Event()

    async def client_loop(n: int) -> None:
        for i in range(10_000):  # a connection per command: the kernel spreads them
            order_id = f"w{n}-{i}-{uuid.uuid4().hex[:6]}"
            try:
                async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
                    resp = await client.post("/commands/CreateOrder", json=order(order_id))
            except httpx.TransportError:
                return  # the workers stopped listening: never acknowledged
            if resp.status_code != 201:
                unexpected.append(resp.text)
                return
            acked.append(order_id)
            seen.add(worker_of(resp))
            if len(seen) == 2 and len(acked) >= 40:
                enough.set()

    try:
        tasks = [asyncio.create_task(client_loop(n)) for n in range(8)]
        await asyncio.wait_for(enough.wait(), timeout=120)
        assert seen == {f"{pid:x}" for pid in pids}  # both workers answered commands
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        code = await asyncio.to_thread(daemon.wait)
        assert code == 0, daemon.logs()
        assert unexpected == []
        assert "Traceback" not in daemon.logs()
        for pid in pids:  # no worker outlives the supervisor
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)

        daemon.start()  # one worker: every acknowledged command is in the store
        async with daemon.async_client() as client:
            for order_id in acked:
                resp = await client.get(f"/streams/Order-{order_id}")
                assert resp.status_code == 200, (order_id, resp.text)
    finally:
        daemon.stop()


def test_workers_share_the_background_work_out(tmp_path: Path) -> None:
    """The example's two projections (and its relay) are dealt over the two workers: each
    projection is applied in a worker of its own, not both in whichever asked first."""
    # a renewal period of 10 s: a worker slow to start on a loaded machine still asks for its
    # share before the other takes it
    config = edited_example(
        tmp_path / "config",
        {"\nbus: memory\n": "\nbus: memory\nruntime:\n  projections:\n    lease_ttl: 30\n"},
    )
    daemon = Daemon(config, tmp_path, args=["--workers", "2"], ready_timeout=90).start()
    try:
        pids = worker_pids(daemon)

        def holders() -> dict[str, int]:
            with contextlib.closing(sqlite3.connect(daemon.db_path)) as conn:
                rows = conn.execute("SELECT name, owner FROM leases").fetchall()
            return {name: int(owner.split(":")[-2]) for name, owner in rows}

        wanted = {"projection:orders", "projection:customer_totals", "relay:orders"}
        eventually(lambda: wanted <= holders().keys(), 30, "every lease taken")
        held = holders()
        assert {held["projection:orders"], held["projection:customer_totals"]} == set(pids)
        # and both workers' projections work: a command shows in both read models
        with daemon.client() as client:
            assert client.post("/commands/CreateOrder", json=order("shared-1")).status_code == 201
            eventually(
                lambda: client.get("/read/orders/shared-1").status_code == 200,
                20,
                "the order in `orders`",
            )
            eventually(
                lambda: client.get("/read/customer_totals/c").status_code == 200,
                20,
                "the customer in `customer_totals`",
            )
    finally:
        daemon.stop()


def test_workers_alternating_on_one_aggregate_decide_on_the_stored_state(tmp_path: Path) -> None:
    config = tmp_path / "counters.yaml"
    config.write_text(COUNTER_YAML)
    with Daemon(config, tmp_path / "run", args=["--workers", "2"], ready_timeout=90) as daemon:
        clients = one_client_per_worker(daemon.url, 2)
        try:
            pair = list(clients.values())
            rounds = 30
            for n in range(rounds):
                client = pair[n % 2]  # each worker's cached state is a command behind
                headers = {"If-Match": str(n)} if n % 3 == 0 else {}
                resp = client.post(
                    "/commands/Increment", json={"counter_id": "c1"}, headers=headers
                )
                assert resp.status_code in (200, 201), resp.text
                assert resp.json()["version"] == n + 1
            stale = pair[1].post(
                "/commands/Increment", json={"counter_id": "c1"}, headers={"If-Match": "3"}
            )
            assert stale.status_code == 409, stale.text
            events = pair[0].get("/streams/Counter-c1").json()["events"]
            assert [e["data"]["count"] for e in events] == list(range(1, rounds + 1))
            for client in pair:  # each worker reads the same state
                state = client.get("/aggregates/Counter/c1").json()
                assert state["version"] == rounds
                assert state["state"]["count"] == rounds
        finally:
            for client in clients.values():
                client.close()
        assert daemon.terminate() == 0


def test_workers_refused_with_the_memory_store(tmp_path: Path) -> None:
    config = edited_example(
        tmp_path / "cfg",
        {
            "  kind: sqlite\n  path: ${CATGAD_SQLITE_PATH:-orders.db}\n  synchronous: full\n": (
                "  kind: memory\n"
            )
        },
    )
    proc = run_cli("run", str(config), "--workers", "2", "--listen", "127.0.0.1:0")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "memory" in proc.stderr and "--workers 2" in proc.stderr


def test_workers_below_one_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli(
        "run", str(ORDERS_YAML), "--workers", "0", "--listen", "127.0.0.1:0",
        env={"CATGAD_SQLITE_PATH": str(tmp_path / "x.db")},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == "catgad run: --workers must be at least 1, got 0"


def test_workers_on_a_port_in_use_fail_cleanly(tmp_path: Path) -> None:
    with Daemon(ORDERS_YAML, tmp_path / "a", args=["--workers", "2"], ready_timeout=90) as first:
        proc = run_cli(
            "run", str(ORDERS_YAML), "--workers", "2", "--listen", f"127.0.0.1:{first.port}",
            env={"CATGAD_SQLITE_PATH": str(tmp_path / "b.db")},
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        assert "address already in use" in proc.stderr
        assert "Traceback" not in proc.stderr
