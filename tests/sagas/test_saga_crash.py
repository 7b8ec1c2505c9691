"""kill -9 of the daemon while 50 sagas are mid-flight (a slow payment webhook): after a restart
every saga ends completed or compensated, compensations ran newest first, no command took
effect twice, and a payment re-sent after the crash carried the same command id (checked on
the webhook's side)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from helpers.daemon import Daemon

from .orders import DEADLINE, SAGA_YAML, SECRET, expected_undo, orders, wait_for

pytestmark = pytest.mark.slow


def test_sagas_survive_a_kill_mid_flight(tmp_path: Path, payments: tuple[str, Path]) -> None:
    url, record = payments
    env = {"PAYMENTS_WEBHOOK_URL": url, "ORDERS_WEBHOOK_SECRET": SECRET}
    placed = orders()
    with Daemon(SAGA_YAML, tmp_path / "d", env=env) as daemon:
        with daemon.client() as client:
            for order in placed:
                response = client.post("/commands/PlaceOrder", json=order)
                assert response.status_code == 201, response.text
        # mid-flight: some payments are being answered right now
        wait_for(lambda: len(record.read_text().splitlines()) >= 12, 30, "payments in flight")
        daemon.kill()
        seen_before = len(record.read_text().splitlines())
        daemon.start()
        with daemon.client(timeout=10) as client:

            def all_settled() -> list[dict[str, Any]] | None:
                listed = client.get("/sagas/PlaceOrder").json()["instances"]
                done = [i for i in listed if i["status"] in ("completed", "compensated")]
                return listed if len(done) == len(placed) else None

            wait_for(all_settled, DEADLINE, "every saga to settle")
            for order in placed:
                saga = client.get(f"/sagas/PlaceOrder/{order['order_id']}").json()
                undo = expected_undo(order)
                assert saga["status"] == ("completed" if undo is None else "compensated"), saga
                sent = [e["command"] for e in saga["log"] if e["decision"] == "CompensationSent"]
                assert sent == (undo or [])
                for kind in ("Reservation", "Payment", "Shipment", "Order"):
                    stream = client.get(f"/streams/{kind}-{order['order_id']}")
                    if stream.status_code == 404:
                        continue
                    events = stream.json()["events"]
                    causes = [e["causationid"] for e in events]
                    assert len(causes) == len(set(causes)), f"a command took effect twice: {events}"
            payment = client.get("/aggregates/Payment/o2").json()["state"]
            assert payment["status"] == "refunded"
    requests: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        requests[entry["order_id"]].add(entry["command_id"])
        counts[entry["order_id"]] += 1
    assert all(len(ids) == 1 for ids in requests.values()), "a re-sent payment had a new id"
    assert len(requests) == len(placed)
    resent = [order for order, n in counts.items() if n > 1]
    assert resent, f"no payment was re-sent after the crash ({seen_before} before it)"
