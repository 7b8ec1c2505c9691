"""The issue, against a real `catgad run` of the orders example.

Its request: CreateOrder with "price": 5.0 (valid: JSON Schema counts 5.0 as an
integer) was stored as it came, and then every read of the order failed (CEL
will not multiply the int qty by the double price). Now the price is stored as
the int 5, the order reads back with its total, its read model row too, and it
can be paid. An order stored that way by an earlier catgad answers 500
unreadable-stream, naming the stream and the repair, until `catgad migrate`; its
read model row comes back by replaying its dead letter (as repaired), and by a rebuild.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from catgad.envelope import Envelope
from catgad.ids import event_id
from catgad.store.sqlite import SQLiteStore
from tests.helpers.daemon import ORDERS_YAML, Daemon, run_cli
from tests.support.waiting import eventually

WAIT = 30.0  # seconds a read model may take to show a change

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]

ENV = {"CATGAD_REDIS_PROJECTIONS": "false"}  # the read model in SQLite only: no Redis needed
ORDER = {"order_id": "o1", "customer": "alice", "items": [{"sku": "book", "qty": 2, "price": 5.0}]}


def read_row(client: httpx.Client, key: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        answer = client.get(f"/read/orders/{key}")
        return answer.json() if answer.status_code == 200 else None

    return probe


def test_create_order_with_price_5_0_reads_back_and_is_paid(tmp_path: Path) -> None:
    with Daemon(ORDERS_YAML, tmp_path, env=ENV) as daemon, daemon.client() as client:
        created = client.post("/commands/CreateOrder", json=ORDER)
        assert created.status_code == 201, created.text
        assert '"price":5}' in created.text  # the int, on the wire
        [event] = created.json()["events"]
        assert event["data"]["items"] == [{"sku": "book", "qty": 2, "price": 5}]
        stored = client.get("/streams/Order-o1")
        assert stored.status_code == 200 and '"price":5}' in stored.text
        assert type(stored.json()["events"][0]["data"]["items"][0]["price"]) is int

        order = client.get("/aggregates/Order/o1")
        assert order.status_code == 200, order.text
        assert order.json()["state"]["total"] == 10 and order.json()["version"] == 1

        row = eventually(read_row(client, "o1"), WAIT, "the orders row of o1")
        assert (row["status"], row["total"]) == ("created", 10)

        paid = client.post("/commands/PayOrder", json={"order_id": "o1", "amount": 10})
        assert paid.status_code == 200, paid.text
        assert paid.json()["version"] == 2
        eventually(
            lambda: (read_row(client, "o1")() or {}).get("status") == "paid", WAIT, "o1 paid"
        )


async def stored_by_an_earlier_catgad(db: Path) -> None:
    """Order o2 with price 5.0, as catgad wrote it before numbers were normalised."""
    store = SQLiteStore(db)
    await store.open()
    try:
        data = {
            "order_id": "o2",
            "customer": "bob",
            "items": [{"sku": "pen", "qty": 3, "price": 5.0}],
        }
        event = Envelope(
            type="OrderCreated",
            data=data,
            id=event_id("old-o2", 0),
            source="orders",
            subject="Order-o2",
            correlationid="old-o2",
            causationid="old-o2",
            dataschemaversion=1,
        )
        await store.append("Order-o2", [event], expected_version=0, command_id="old-o2")
    finally:
        await store.close()


def test_a_stream_poisoned_before_answers_500_until_migrate_repairs_it(tmp_path: Path) -> None:
    daemon = Daemon(ORDERS_YAML, tmp_path, env=ENV)
    asyncio.run(stored_by_an_earlier_catgad(daemon.db_path))
    with daemon, daemon.client() as client:
        unreadable = client.get("/aggregates/Order/o2")
        assert unreadable.status_code == 500, unreadable.text
        problem = unreadable.json()
        assert problem["type"] == "https://catgad.dev/problems/unreadable-stream"
        assert (problem["stream"], problem["version"]) == ("Order-o2", 1)
        assert problem["rule"] == "aggregates.Order.on.OrderCreated.set.total"
        assert "catgad migrate" in problem["detail"]
        refused = client.post("/commands/PayOrder", json={"order_id": "o2", "amount": 15})
        assert refused.status_code == 500 and "unreadable-stream" in refused.text
        # the read model could not apply it either: dead-lettered, no row
        letters = eventually(
            lambda: client.get("/projections/orders").json()["dead_letters"]["items"],
            WAIT,
            "o2's dead letter in the orders projection",
        )
        assert [(d["stream"], d["event_type"]) for d in letters] == [("Order-o2", "OrderCreated")]
        assert client.get("/read/orders/o2").status_code == 404

        # a daemon may keep running meanwhile (README): it reads the stream afresh
        done = run_cli("migrate", str(ORDERS_YAML), env=daemon.env)
        assert done.returncode == 0, done.stderr
        assert any(line.startswith("normalised:  1 (") for line in done.stdout.splitlines())

        order = client.get("/aggregates/Order/o2")
        assert order.status_code == 200, order.text
        assert order.json()["state"]["total"] == 15
        # the dead letter is replayed as the store holds the event now (repaired)
        replayed = client.post("/projections/orders/replay")
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["failed"] == [], replayed.text
        assert [r["stream"] for r in replayed.json()["replayed"]] == ["Order-o2"]
        row = eventually(read_row(client, "o2"), WAIT, "the orders row of o2")
        assert (row["status"], row["total"]) == ("created", 15)
        paid = client.post("/commands/PayOrder", json={"order_id": "o2", "amount": 15})
        assert paid.status_code == 200, paid.text

        # and a rebuild from the store gives the same read model
        rebuilt = run_cli("rebuild", str(ORDERS_YAML), "orders", "--timeout", "60", env=daemon.env)
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        row = eventually(
            lambda: r if (r := read_row(client, "o2")()) and r["status"] == "paid" else None,
            WAIT,
            "the orders row of o2, paid",
        )
        assert (row["status"], row["total"]) == ("paid", 15)
