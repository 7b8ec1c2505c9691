"""GET routes over real HTTP: stream pages, aggregate state, health, readiness, metrics,
OpenAPI, routing errors and request ids."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate

from tests.helpers.api import assert_problem
from tests.helpers.api import create_order as create

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]


def shipped_order(client: httpx.Client, order_id: str) -> str:
    assert create(client, order_id).status_code == 201
    pay = client.post("/commands/PayOrder", json={"order_id": order_id, "amount": 900})
    assert pay.status_code == 200
    ship = client.post("/commands/ShipOrder", json={"order_id": order_id, "tracking": "T9"})
    assert ship.status_code == 200
    return f"Order-{order_id}"


def test_stream_whole(client: httpx.Client, order_id: str) -> None:
    stream = shipped_order(client, order_id)
    resp = client.get(f"/streams/{stream}")
    assert resp.status_code == 200
    assert resp.headers["etag"] == '"3"'
    body = resp.json()
    assert body["stream"] == stream
    assert body["version"] == 3
    assert body["from"] == 1
    assert "next" not in body
    assert [e["streamversion"] for e in body["events"]] == [1, 2, 3]
    assert all(e["subject"] == stream for e in body["events"])


def test_stream_from_is_inclusive_and_pages(client: httpx.Client, order_id: str) -> None:
    stream = shipped_order(client, order_id)
    page = client.get(f"/streams/{stream}", params={"from": 2, "limit": 1}).json()
    assert [e["streamversion"] for e in page["events"]] == [2]
    assert page["version"] == 3
    assert page["next"] == f"/streams/{stream}?from=3&limit=1"
    last = client.get(page["next"]).json()
    assert [e["streamversion"] for e in last["events"]] == [3]
    assert "next" not in last
    zero = client.get(f"/streams/{stream}", params={"from": 0}).json()
    assert [e["streamversion"] for e in zero["events"]] == [1, 2, 3]
    past = client.get(f"/streams/{stream}", params={"from": 4}).json()
    assert past["events"] == [] and past["version"] == 3


@pytest.mark.parametrize(
    ("query", "name"),
    [({"from": "-1"}, "from"), ({"from": "x"}, "from"), ({"limit": "0"}, "limit"),
     ({"limit": "10001"}, "limit"), ({"from": "1.5"}, "from")],
)  # fmt: skip
def test_stream_query_validated(
    client: httpx.Client, order_id: str, query: dict[str, str], name: str
) -> None:
    create(client, order_id)
    resp = client.get(f"/streams/Order-{order_id}", params=query)
    problem = assert_problem(resp, 400, "malformed-request")
    assert problem["where"] == f"query {name}"


def test_unknown_stream(client: httpx.Client) -> None:
    problem = assert_problem(client.get("/streams/Order-nobody"), 404, "not-found")
    assert problem["kind"] == "stream"
    assert problem["name"] == "Order-nobody"


def test_aggregate_state(client: httpx.Client, order_id: str) -> None:
    stream = shipped_order(client, order_id)
    resp = client.get(f"/aggregates/Order/{order_id}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["type"] == "Order"
    assert body["id"] == order_id
    assert body["stream"] == stream
    assert body["version"] == 3
    assert body["state"]["status"] == "shipped"
    assert body["state"]["total"] == 900
    assert body["state"]["tracking"] == "T9"
    assert resp.headers["etag"] == '"3"'


def test_aggregate_unknown(client: httpx.Client) -> None:
    assert_problem(client.get("/aggregates/Invoice/1"), 404, "not-found")
    problem = assert_problem(client.get("/aggregates/Order/nobody"), 404, "not-found")
    assert problem["name"] == "nobody"


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["store"] == "ok"


def test_metrics_count_commands_and_events(client: httpx.Client, order_id: str) -> None:
    create(client, order_id)
    client.post("/commands/PayOrder", json={"order_id": order_id, "amount": 1})
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'catgad_commands_total{command="CreateOrder",outcome="ok"}' in text
    assert 'catgad_commands_total{command="PayOrder",outcome="precondition-failed"}' in text
    assert 'catgad_command_duration_seconds_bucket{command="CreateOrder"' in text
    assert 'catgad_events_appended_total{type="OrderCreated"}' in text


def test_openapi_document(client: httpx.Client) -> None:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    validate(doc)
    assert doc["info"]["title"] == "orders"
    assert set(doc["paths"]) >= {"/commands/CreateOrder", "/streams/{stream_id}", "/readyz"}


def test_unknown_route_and_method(client: httpx.Client) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "https://catgad.dev/problems/route-not-found"
    wrong = client.get("/commands/CreateOrder")
    assert wrong.status_code == 405
    assert wrong.json()["type"] == "https://catgad.dev/problems/method-not-allowed"
    assert "POST" in wrong.headers["allow"]


def test_request_id(client: httpx.Client) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert generated
    assert client.get("/healthz").headers["x-request-id"] != generated
    echoed = client.get("/healthz", headers={"X-Request-Id": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
