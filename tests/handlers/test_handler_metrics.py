"""Per-handler metrics on /metrics of a real daemon, after real calls to a real webhook server.

One webhook goes through every outcome in turn (the fault server's /switch), and
the exposition must count each: ok, rejected, malformed, failed (with its retry),
then circuit_open; the latency histogram counts every call and the circuit gauge
shows the breaker open. A plugin handler reports through the same families.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.handlers.conftest import tickets_yaml
from tests.handlers.servers import WebhookServer
from tests.helpers.daemon import Daemon

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_a_webhooks_outcomes_latency_retries_and_circuit(
    tmp_path: Path, faults: WebhookServer
) -> None:
    config = tickets_yaml(
        tmp_path,
        faults.url("/switch"),
        retries=1,
        circuit_breaker={"failures": 2, "reset_after": 600},
    )
    with Daemon(config, tmp_path / "daemon") as daemon, daemon.client() as client:
        before = scrape(client)
        for outcome in ("ok", "rejected", "failed", "malformed", "circuit_open"):
            assert (
                value(before, "catgad_handler_calls_total", handler="triage", outcome=outcome) == 0
            )
        assert value(before, "catgad_handler_circuit_state", handler="triage", state="closed") == 1

        def triage(expected: int, **data: object) -> None:
            response = client.post("/commands/Triage", json={"ticket_id": "t1", **data})
            assert response.status_code == expected, response.text

        assert client.post(
            "/commands/OpenTicket", json={"ticket_id": "t1", "title": "printer on fire"}
        ).is_success
        triage(200, priority=2)  # ok
        triage(409, priority=0)  # the handler's 422 {"error"}: rejected
        faults.mode("bad:07-no-events")
        triage(502)  # malformed
        faults.mode("fail")
        triage(503)  # two attempts (one retry), both 500: failed, and the circuit opens
        triage(503)  # circuit_open: refused without a request
        assert faults.requests("/switch") == 5

        after = scrape(client)

    def calls(outcome: str) -> float | None:
        return value(after, "catgad_handler_calls_total", handler="triage", outcome=outcome)

    assert {o: calls(o) for o in ("ok", "rejected", "malformed", "failed", "circuit_open")} == {
        "ok": 1,
        "rejected": 1,
        "malformed": 1,
        "failed": 1,
        "circuit_open": 1,
    }
    assert value(after, "catgad_handler_retries_total", handler="triage") == 1
    assert value(after, "catgad_handler_duration_seconds_count", handler="triage") == 5
    total = value(after, "catgad_handler_duration_seconds_sum", handler="triage")
    assert total is not None and total > 0
    states = {
        state: value(after, "catgad_handler_circuit_state", handler="triage", state=state)
        for state in ("closed", "half-open", "open")
    }
    assert states == {"closed": 0, "half-open": 0, "open": 1}


def test_a_plugin_reports_through_the_same_families(tmp_path: Path) -> None:
    from tests.helpers.daemon import ORDERS_YAML
    from tests.support.ports import free_port

    env = {"ORDERS_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/gift-note"}
    with Daemon(ORDERS_YAML, tmp_path, env=env) as daemon, daemon.client() as client:
        order = {
            "order_id": "o1",
            "customer": "ada",
            "items": [{"sku": "tea", "qty": 1, "price": 300}],
        }
        assert client.post("/commands/CreateOrder", json=order).is_success
        discount = {"order_id": "o1", "code": "TEN", "percent": 10}
        assert client.post("/commands/ApplyDiscount", json=discount).status_code == 200
        assert client.post("/commands/ApplyDiscount", json=discount).status_code == 409
        samples = scrape(client)
    assert value(samples, "catgad_handler_calls_total", handler="discounts", outcome="ok") == 1
    assert (
        value(samples, "catgad_handler_calls_total", handler="discounts", outcome="rejected") == 1
    )
    assert value(samples, "catgad_handler_duration_seconds_count", handler="discounts") == 2
    # the example's webhook was never called: its series are there, at zero
    assert value(samples, "catgad_handler_calls_total", handler="gift-notes", outcome="ok") == 0
