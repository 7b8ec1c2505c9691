"""kill -9 of the daemon while 50 sagas are mid-flight (a slow payment webhook): after a restart
every saga ends completed or compensated, compensations ran newest first, no command took
effect twice, and a payment re-sent after the crash carried the same command id (checked on
the webhook's side)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.daemon import REPO, Daemon

SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SERVER = Path(__file__).with_name("payments_server.py")
DEADLINE = 90.0

pytestmark = pytest.mark.slow


def wait_for(condition: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def payments(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    record = tmp_path / "payments.jsonl"
    record.touch()
    env = {**os.environ, "PORT": "0", "SECRET": SECRET, "DELAY": "0.4", "RECORD": str(record)}
    proc = subprocess.Popen(
        [sys.executable, str(SERVER)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield f"http://127.0.0.1:{int(line.split()[-1])}/payment", record
    finally:
        proc.terminate()
        proc.wait(10)


def orders() -> list[dict[str, Any]]:
    out = []
    for i in range(50):
        order = {"order_id": f"o{i}", "sku": "book", "qty": 1, "amount": 2500, "address": "Main"}
        if i % 6 == 1:
            order["amount"] = 200_000  # declined: the reservation is released
        elif i % 6 == 2:
            order["address"] = "nowhere"  # refused at shipping: refund, then release
        out.append(order)
    return out


def expected_undo(order: dict[str, Any]) -> list[str] | None:
    """The compensating commands, in order; None when the saga completes."""
    if order["amount"] > 100_000:
        return ["ReleaseStock"]
    if order["address"] == "nowhere":
        return ["RefundPayment", "ReleaseStock"]
    return None


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
