"""The order saga workload of the crash tests: its orders, their expected compensations, the
slow payments webhook (a fixture in conftest.py), a bounded wait, and the checks of the end:
every saga settled as its order says, nothing done twice, payments re-sent under one id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.daemon import REPO
from tests.support.waiting import eventually

SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SERVER = Path(__file__).with_name("payments_server.py")
DEADLINE = 90.0


def payments_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
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


def settle_and_check(client: httpx.Client, placed: list[dict[str, Any]], within: float) -> None:
    """Wait until every saga is completed or compensated, then check each: its status and
    compensations (newest first) as its order says, and no command taking effect twice."""

    def all_settled() -> bool:
        listed = client.get("/sagas/PlaceOrder").json()["instances"]
        done = [i for i in listed if i["status"] in ("completed", "compensated")]
        return len(done) == len(placed)

    eventually(all_settled, within, "every saga to settle")
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
            causes = [e["causationid"] for e in stream.json()["events"]]
            assert len(causes) == len(set(causes)), f"a command took effect twice in {kind}"


def payment_requests(record: Path, placed: list[dict[str, Any]]) -> Counter[str]:
    """Requests per order, as the webhook recorded them; each order's all carry one id."""
    ids: dict[str, set[str]] = defaultdict(set)
    counts: Counter[str] = Counter()
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        ids[entry["order_id"]].add(entry["command_id"])
        counts[entry["order_id"]] += 1
    assert all(len(one) == 1 for one in ids.values()), "a re-sent payment had a new id"
    assert len(ids) == len(placed)
    return counts
