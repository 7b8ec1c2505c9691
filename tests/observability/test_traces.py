"""One trace across a command's whole path on real processes: a PlaceOrder sent with a W3C
`traceparent`, the order saga picking up its event and sending ChargePayment to the example
payments webhook (a real server), spans written by the console exporter and read back."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.handlers.servers import WebhookServer
from tests.helpers.daemon import REPO, Daemon, edited_example
from tests.servers.nats import server_url

SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"

# the saga example plus a read model of its orders: the projection step joins the trace
PROJECTION = """
projections:
  placed:
    target:
      kind: sqlite
      path: ${CATGAD_READ_SQLITE_PATH}
    key: data.order_id
    columns:
      sku: string
    on:
      OrderPlaced:
        upsert:
          sku: data.sku
"""

pytestmark = pytest.mark.slow


def spans(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"context"' in line and '"trace_id"' in line:
            out.append(json.loads(line))
    return out


def wait_for(log: Path, names: set[str], within: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = spans(log)
        if names <= {s["name"] for s in found}:
            return found
        time.sleep(0.1)
    raise AssertionError(f"spans {names - {s['name'] for s in spans(log)}} never exported")


def test_a_command_is_one_trace_through_webhook_projection_and_saga(tmp_path: Path) -> None:
    with WebhookServer.python_example(SECRET) as payments:
        env = {
            "PAYMENTS_WEBHOOK_URL": payments.url("/payment"),
            "ORDERS_WEBHOOK_SECRET": SECRET,
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_SERVICE_NAME": "trace-test",
        }
        config = tmp_path / "order-saga.yaml"
        config.write_text(SAGA_YAML.read_text() + PROJECTION)
        with Daemon(config, tmp_path / "daemon", env=env) as daemon, daemon.client() as client:
            order = {"order_id": "t1", "sku": "book", "qty": 1, "amount": 100, "address": "A"}
            headers = {"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"}
            response = client.post("/commands/PlaceOrder", json=order, headers=headers)
            assert response.status_code == 201, response.text
            found = wait_for(
                daemon.log_path,
                {"POST /commands/PlaceOrder", "command PlaceOrder", "saga start", "saga step",
                 "project", "command ChargePayment", "handler", "store.append"},
            )  # fmt: skip
    mine = [s for s in found if s["context"]["trace_id"] == f"0x{TRACE}"]
    by_id = {s["context"]["span_id"]: s for s in mine}

    def parent_of(span: dict[str, Any]) -> dict[str, Any]:
        parent = by_id.get(span["parent_id"])
        assert parent is not None, f"{span['name']}'s parent {span['parent_id']} not in the trace"
        return parent

    def one(name: str) -> dict[str, Any]:
        named = [s for s in mine if s["name"] == name]
        assert named, (
            f"no span {name!r} in the trace; names: {sorted(by_id and {s['name'] for s in mine})}"
        )
        return named[0]

    http = one("POST /commands/PlaceOrder")
    assert http["parent_id"] == f"0x{CALLER_SPAN}"  # continues the caller's trace
    place = one("command PlaceOrder")
    assert parent_of(place) is http
    assert place["attributes"]["catgad.stream"].endswith("t1")
    assert any(parent_of(s) is place for s in mine if s["name"] == "store.append")
    # nothing in a daemon subscribes to the memory bus, so its relay publishes nothing
    assert not [s for s in found if s["name"] == "bus.publish"]
    start = one("saga start")
    assert parent_of(start) is place  # the saga continues from the event's traceparent
    charge = one("command ChargePayment")
    # the saga's command hangs under the saga's span, its webhook call under the command
    ancestors, at = [], charge
    while at.get("parent_id") in by_id:
        at = parent_of(at)
        ancestors.append(at["name"])
    assert "saga step" in ancestors and "command PlaceOrder" in ancestors, ancestors
    webhook = [s for s in mine if s["name"] == "handler" and parent_of(s) is charge]
    assert webhook and webhook[0]["attributes"]["catgad.handler"]
    projected = one("project")
    assert projected["attributes"]["catgad.projection"] == "placed"
    assert parent_of(projected) is place  # OrderPlaced carries PlaceOrder's span


@pytest.mark.nats
def test_over_a_broker_the_routed_command_and_the_relays_publish_stay_in_the_trace(
    tmp_path: Path,
) -> None:
    """On NATS a command travels over the bus to the replica serving its stream, and the relay
    publishes its events to `events`: the command's span continues the request's (it once
    began a trace of its own), and each publish is in the command's trace. (On the memory
    bus, where nothing in a daemon subscribes, the relay publishes nothing.)"""
    prefix = f"trace{uuid.uuid4().hex[:8]}"
    bus = f"bus:\n  kind: nats\n  url: {server_url('current')}\n  options: {{prefix: {prefix}}}\n"
    config = edited_example(tmp_path / "config", {"\nbus: memory\n": f"\n{bus}"})
    env = {"OTEL_TRACES_EXPORTER": "console", "CATGAD_REDIS_PROJECTIONS": "false"}
    with Daemon(config, tmp_path / "daemon", env=env) as daemon, daemon.client() as client:
        order = {"order_id": "t2", "customer": "c", "items": [{"sku": "s", "qty": 1, "price": 5}]}
        headers = {"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"}
        response = client.post("/commands/CreateOrder", json=order, headers=headers)
        assert response.status_code == 201, response.text
        found = wait_for(
            daemon.log_path,
            {"POST /commands/CreateOrder", "command CreateOrder", "store.append", "bus.publish"},
        )
    mine = {s["context"]["span_id"]: s for s in found if s["context"]["trace_id"] == f"0x{TRACE}"}
    named = {s["name"]: s for s in mine.values()}
    assert {"command CreateOrder", "bus.publish"} <= named.keys(), sorted(
        (s["name"], s["context"]["trace_id"]) for s in found
    )
    http, command = named["POST /commands/CreateOrder"], named["command CreateOrder"]
    assert mine.get(command["parent_id"]) is http
    published = [s for s in mine.values() if s["name"] == "bus.publish"]
    assert all(mine.get(s["parent_id"]) is command for s in published)
