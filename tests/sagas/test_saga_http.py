"""Sagas over HTTP on a real daemon: the order saga example with its payments webhook (the
README's session), the problems, the OpenAPI document, and a failed compensation visible
over HTTP and in /metrics until a retry finishes it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.handlers.servers import WebhookServer
from tests.helpers.api import PROBLEM_BASE, PROBLEM_JSON
from tests.helpers.daemon import REPO, Daemon
from tests.sagas.conftest import SHOP
from tests.support.waiting import eventually

SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

pytestmark = pytest.mark.slow


def settled(client: httpx.Client, name: str, instance: str, within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = client.get(f"/sagas/{name}/{instance}")
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            if body["status"] in ("completed", "compensated", "failed"):
                return body
        time.sleep(0.05)
    raise AssertionError(f"saga {name}/{instance} did not settle")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with WebhookServer.python_example(SECRET) as payments:
        env = {"PAYMENTS_WEBHOOK_URL": payments.url("/payment"), "ORDERS_WEBHOOK_SECRET": SECRET}
        with Daemon(SAGA_YAML, tmp_path_factory.mktemp("saga-example"), env=env) as daemon:
            yield daemon


def schema_of(doc: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", **doc})


def test_an_order_placed_runs_the_saga_to_completion(example: Daemon) -> None:
    with example.client() as client:
        order = {"order_id": "h1", "sku": "book", "qty": 2, "amount": 2500, "address": "Main St"}
        assert client.post("/commands/PlaceOrder", json=order).status_code == 201
        saga = settled(client, "PlaceOrder", "h1")
        assert saga["status"] == "completed"
        assert [e["name"] for e in saga["log"] if e["decision"] == "StepSucceeded"] == [
            "reserve", "pay", "ship", "confirm",
        ]  # fmt: skip
        assert client.get("/aggregates/Payment/h1").json()["state"]["status"] == "captured"
        doc = client.get("/openapi.json").json()
        validate(doc)
        schema_of(doc, "SagaInstance").validate(saga)


def test_a_declined_payment_releases_the_stock(example: Daemon) -> None:
    with example.client() as client:
        start = {"order_id": "h2", "sku": "book", "qty": 1, "amount": 200_000, "address": "x"}
        created = client.post("/sagas/PlaceOrder", json=start)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/sagas/PlaceOrder/h2"
        again = client.post("/sagas/PlaceOrder", json=start)
        assert again.status_code == 200 and again.json()["id"] == "h2"
        saga = settled(client, "PlaceOrder", "h2")
        assert (saga["status"], saga["reason"]) == ("compensated", "PaymentDeclined arrived")
        assert client.get("/aggregates/Reservation/h2").json()["state"]["status"] == "released"
        listed = client.get("/sagas/PlaceOrder", params={"status": "compensated"}).json()
        assert "h2" in [i["id"] for i in listed["instances"]]
        doc = client.get("/openapi.json").json()
        schema_of(doc, "SagaList").validate(listed)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "slug"),
    [
        ("post", "/sagas/Nope", {}, 404, "saga-not-found"),
        ("get", "/sagas/PlaceOrder/nobody", None, 404, "saga-not-found"),
        ("post", "/sagas/PlaceOrder", {"order_id": "h3"}, 400, "invalid-payload"),
        ("get", "/sagas/PlaceOrder?status=lost", None, 400, "malformed-request"),
        ("post", "/sagas/PlaceOrder/h1/retry", None, 409, "saga-conflict"),
        ("post", "/sagas/PlaceOrder/h1/cancel", None, 409, "saga-conflict"),
    ],
)
def test_problems(
    example: Daemon, method: str, path: str, body: Any, status: int, slug: str
) -> None:
    with example.client() as client:
        if path.endswith(("/retry", "/cancel")):  # an instance that has finished
            order = {"order_id": "h1", "sku": "b", "qty": 1, "amount": 1, "address": "a"}
            client.post("/commands/PlaceOrder", json=order)
            settled(client, "PlaceOrder", "h1")
        response = client.request(method, path, json=body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        problem = response.json()
        assert problem["type"] == PROBLEM_BASE + slug
        assert problem["status"] == status
        assert "Traceback" not in response.text


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("saga-shop")
    text = re.sub(r"^store: memory$", "store: {kind: sqlite, path: '${CATGAD_SQLITE_PATH}'}",
                  SHOP.replace("timeout: 30s", "timeout: 1s"), flags=re.M)  # fmt: skip
    config = folder / "shop.yaml"
    config.write_text(text.lstrip(), encoding="utf-8")
    with Daemon(config, folder) as daemon:
        yield daemon


def log_of(client: httpx.Client, name: str, instance: str) -> list[dict[str, Any]]:
    response = client.get(f"/sagas/{name}/{instance}")
    return response.json()["log"] if response.status_code == 200 else []


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_failed_compensation_shows_until_a_retry_finishes_it(shop: Daemon) -> None:
    with shop.client() as client:
        order = {"order_id": "f1", "qty": 1, "amount": 3000, "address": "x"}  # awaits a capture
        assert client.post("/commands/PlaceOrder", json=order).status_code == 201
        eventually(
            lambda: any(e["decision"] == "StepAccepted" for e in log_of(client, "Place", "f1")),
            10,
            "the saga to reach its payment",
            interval=0.02,
        )
        assert client.post("/commands/HoldStock", json={"order_id": "f1"}).status_code == 200
        saga = settled(client, "Place", "f1")  # the await times out after 1s; release refused
        assert (saga["status"], saga["reason"]) == (
            "failed",
            "ReleaseStock answered 422: nothing to release",
        )
        assert metric(client, "catgad_saga_instances_total", outcome="failed", saga="Place") == 1
        assert metric(client, "catgad_saga_running", saga="Place", status="failed") == 1
        assert client.post("/commands/UnholdStock", json={"order_id": "f1"}).status_code == 200
        retried = client.post("/sagas/Place/f1/retry")
        assert retried.status_code == 200, retried.text
        saga = settled(client, "Place", "f1")
        assert saga["status"] == "compensated"
        assert client.get("/aggregates/Reservation/f1").json()["state"]["status"] == "released"
        assert metric(client, "catgad_saga_running", saga="Place", status="failed") == 0
