"""The order saga workload of the crash tests: its orders, their expected compensations, the
slow payments webhook (a fixture in conftest.py) and a bounded wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.daemon import REPO

SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SERVER = Path(__file__).with_name("payments_server.py")
DEADLINE = 90.0


def wait_for(condition: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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
