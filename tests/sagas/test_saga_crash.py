"""kill -9 of the daemon while 50 sagas are mid-flight (a slow payment webhook): after a restart
every saga ends completed or compensated, compensations ran newest first, no command took
effect twice, and a payment re-sent after the crash carried the same command id (checked on
the webhook's side)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.daemon import Daemon
from tests.sagas.orders import (
    DEADLINE,
    SAGA_YAML,
    SECRET,
    orders,
    payment_requests,
    settle_and_check,
)
from tests.support.waiting import eventually

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
        eventually(lambda: len(record.read_text().splitlines()) >= 12, 30, "payments in flight")
        daemon.kill()
        seen_before = len(record.read_text().splitlines())
        daemon.start()
        with daemon.client(timeout=10) as client:
            settle_and_check(client, placed, DEADLINE)
            payment = client.get("/aggregates/Payment/o2").json()["state"]
            assert payment["status"] == "refunded"
    counts = payment_requests(record, placed)
    resent = [order for order, n in counts.items() if n > 1]
    assert resent, f"no payment was re-sent after the crash ({seen_before} before it)"
