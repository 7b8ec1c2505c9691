"""/metrics of real daemons: process and build-info figures, no `_created` series, and the
saga, process and inbox families an operator alerts on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from catgad import __version__
from tests.handlers.servers import WebhookServer
from tests.helpers.daemon import REPO, Daemon

SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"
PROCESS_YAML = REPO / "config" / "examples" / "fulfilment.yaml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

pytestmark = pytest.mark.slow


def families(text: str) -> set[str]:
    """Family names as declared, with a counter's `_total` taken off."""
    return {re.sub(r"_total$", "", n) for n in re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE)}


def samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def check_common(text: str) -> None:
    names = families(text)
    for name in (
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ):
        assert name in names, f"{name} missing from /metrics"
    assert re.search(
        rf'^catgad_build_info\{{.*version="{re.escape(__version__)}".*\}} 1\.0$', text, re.MULTILINE
    ), "catgad_build_info has no version label"
    created = [s for s in samples(text) if re.match(r"^\w+_created[{ ]", s)]
    assert created == [], f"stray _created series: {created[:5]}"


def test_saga_daemon_metrics(tmp_path: Path) -> None:
    with WebhookServer.python_example(SECRET) as payments:
        env = {"PAYMENTS_WEBHOOK_URL": payments.url("/payment"), "ORDERS_WEBHOOK_SECRET": SECRET}
        with Daemon(SAGA_YAML, tmp_path, env=env) as daemon, daemon.client() as client:
            order = {"order_id": "m1", "sku": "book", "qty": 1, "amount": 100, "address": "A"}
            assert client.post("/commands/PlaceOrder", json=order).status_code == 201
            assert client.get("/inbox").status_code == 200  # refreshes the inbox gauge
            text = client.get("/metrics").text
    check_common(text)
    names = families(text)
    for name in (
        "catgad_saga_instances",
        "catgad_saga_running",
        "catgad_inbox_items",
        "catgad_commands",
        "catgad_handler_calls",
    ):
        assert name in names, f"{name} missing from /metrics"
    assert re.search(r'^catgad_inbox_items\{kind="dead_letter"\} \d', text, re.MULTILINE)


def test_process_daemon_metrics(tmp_path: Path) -> None:
    with Daemon(PROCESS_YAML, tmp_path) as daemon, daemon.client() as client:
        text = client.get("/metrics").text
    check_common(text)
    names = families(text)
    for name in (
        "catgad_process_transitions",
        "catgad_process_instances",
        "catgad_process_timers_fired",
        "catgad_process_approvals_pending",
    ):
        assert name in names, f"{name} missing from /metrics"
