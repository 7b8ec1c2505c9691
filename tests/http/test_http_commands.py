"""POST /commands over real HTTP: the README session, every error's problem body, idempotency,
If-Match and CloudEvent bodies, against a real `catgad run` of the orders example."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from catgad.http.fastpath import serves
from tests.helpers.api import assert_problem
from tests.helpers.api import create_order as create

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]


def test_readme_session(client: httpx.Client, order_id: str) -> None:
    stream = f"Order-{order_id}"

    created = create(client, order_id)
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == f"/streams/{stream}"
    body = created.json()
    assert body["stream"] == stream
    assert body["version"] == 1
    assert body["duplicate"] is False
    [event] = body["events"]
    assert event["type"] == "OrderCreated"
    assert event["subject"] == stream
    assert event["streamversion"] == 1
    assert event["specversion"] == "1.0"
    assert event["causationid"] == body["command_id"]

    wrong = client.post("/commands/PayOrder", json={"order_id": order_id, "amount": 1})
    problem = assert_problem(wrong, 422, "precondition-failed")
    assert problem["rule"] == "data.amount == state.total"
    assert problem["detail"] == "amount must equal the order total"
    assert problem["command"] == "PayOrder"

    paid = client.post("/commands/PayOrder", json={"order_id": order_id, "amount": 900})
    assert paid.status_code == 200, paid.text
    assert paid.headers["etag"] == '"2"'
    assert [e["type"] for e in paid.json()["events"]] == ["OrderPaid"]

    shipped = client.post("/commands/ShipOrder", json={"order_id": order_id, "tracking": "T1"})
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["version"] == 3

    cancel = client.post("/commands/CancelOrder", json={"order_id": order_id, "reason": "late"})
    problem = assert_problem(cancel, 422, "precondition-failed")
    assert problem["detail"] == "a shipped order cannot be cancelled"
    assert problem["rule"] == "state.status != 'shipped'"

    events = client.get(f"/streams/{stream}").json()["events"]
    assert [e["type"] for e in events] == ["OrderCreated", "OrderPaid", "OrderShipped"]


def test_schema_errors_list_each_field(client: httpx.Client, order_id: str) -> None:
    body = {"order_id": order_id, "items": [{"sku": "tea", "qty": 0, "price": 1}], "extra": 1}
    resp = client.post("/commands/CreateOrder", json=body)
    problem = assert_problem(resp, 400, "invalid-payload")
    pointers = {e["pointer"]: e["message"] for e in problem["errors"]}
    assert set(pointers) >= {"/customer", "/items/0/qty"}
    assert "required" in pointers["/customer"]
    assert "minimum" in pointers["/items/0/qty"] or "less than" in pointers["/items/0/qty"]
    assert "extra" in problem["detail"] or any("extra" in m for m in pointers.values())


@pytest.mark.parametrize(
    ("raw", "words"),
    [(b"{not json", "not valid JSON"), (b"", "empty"), (b'{"a": 1', "not valid JSON")],
)
def test_body_not_json(client: httpx.Client, raw: bytes, words: str) -> None:
    resp = client.post("/commands/CreateOrder", content=raw)
    problem = assert_problem(resp, 400, "malformed-request")
    assert words in problem["detail"]
    assert problem["where"] == "body"


def test_body_not_an_object(client: httpx.Client) -> None:
    resp = client.post("/commands/CreateOrder", json=[1, 2])
    assert_problem(resp, 400, "invalid-payload")


def test_unknown_command(client: httpx.Client) -> None:
    resp = client.post("/commands/LaunchRocket", json={})
    problem = assert_problem(resp, 404, "unknown-command")
    assert problem["command"] == "LaunchRocket"
    assert "CreateOrder" in problem["known"]


def test_body_too_large(client: httpx.Client) -> None:
    resp = client.post("/commands/CreateOrder", content=b"[" + b"1," * 600_000 + b"1]")
    problem = assert_problem(resp, 413, "payload-too-large")
    assert problem["limit"] == 1024 * 1024


def test_idempotency_key_retry_returns_first_result(client: httpx.Client, order_id: str) -> None:
    key = str(uuid.uuid4())
    first = create(client, order_id, **{"Idempotency-Key": key})
    assert first.status_code == 201
    again = create(client, order_id, **{"Idempotency-Key": key})
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["command_id"] == key
    assert again.json()["events"] == first.json()["events"]
    assert again.headers["etag"] == '"1"'
    stream = client.get(f"/streams/Order-{order_id}").json()
    assert stream["version"] == 1
    assert len(stream["events"]) == 1

    # A retry of a command the state would now reject still gets its first result.
    pay_key = str(uuid.uuid4())
    pay = {"order_id": order_id, "amount": 900}
    assert (
        client.post(
            "/commands/PayOrder", json=pay, headers={"Idempotency-Key": pay_key}
        ).status_code
        == 200
    )
    retry = client.post("/commands/PayOrder", json=pay, headers={"Idempotency-Key": pay_key})
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    assert len(client.get(f"/streams/Order-{order_id}").json()["events"]) == 2


def test_idempotency_key_reused_for_another_stream(client: httpx.Client, order_id: str) -> None:
    key = str(uuid.uuid4())
    assert create(client, order_id, **{"Idempotency-Key": key}).status_code == 201
    other = create(client, order_id + "-b", **{"Idempotency-Key": key})
    assert_problem(other, 409, "idempotency-key-reused")


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", 'W/"1"', "*", '"1', "9" * 40])
def test_if_match_malformed(client: httpx.Client, order_id: str, bad: str) -> None:
    resp = create(client, order_id, **{"If-Match": bad})
    problem = assert_problem(resp, 400, "malformed-request")
    assert problem["where"] == "header If-Match"


def test_if_match_conflict_and_match(client: httpx.Client, order_id: str) -> None:
    assert create(client, order_id, **{"If-Match": "0"}).status_code == 201
    pay = {"order_id": order_id, "amount": 900}
    stale = client.post("/commands/PayOrder", json=pay, headers={"If-Match": '"0"'})
    problem = assert_problem(stale, 409, "version-conflict")
    assert problem["expected_version"] == 0
    assert problem["actual_version"] == 1
    assert problem["stream"] == f"Order-{order_id}"
    ok = client.post("/commands/PayOrder", json=pay, headers={"If-Match": '"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == '"2"'
    ship = {"order_id": order_id, "tracking": "T"}
    assert (
        client.post("/commands/ShipOrder", json=ship, headers={"If-Match": "2"}).status_code == 200
    )


def test_cloudevent_body(client: httpx.Client, order_id: str) -> None:
    command_id = str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": command_id,
        "source": "tests",
        "type": "CreateOrder",
        "correlationid": "corr-1",
        "data": {
            "order_id": order_id,
            "customer": "bob",
            "items": [{"sku": "x", "qty": 1, "price": 5}],
        },
    }
    headers = {"Content-Type": "application/cloudevents+json"}
    resp = client.post("/commands/CreateOrder", json=event, headers=headers)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["command_id"] == command_id
    [stored] = body["events"]
    assert stored["causationid"] == command_id
    assert stored["correlationid"] == "corr-1"
    # its id is the idempotency key
    again = client.post("/commands/CreateOrder", json=event, headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_cloudevent_of_another_type(client: httpx.Client, order_id: str) -> None:
    event = {"specversion": "1.0", "id": "x", "source": "t", "type": "PayOrder",
             "data": {"order_id": order_id, "amount": 1}}  # fmt: skip
    assert_problem(client.post("/commands/CreateOrder", json=event), 400, "invalid-payload")


def test_cloudevents_content_type_needs_a_cloudevent(client: httpx.Client, order_id: str) -> None:
    resp = client.post(
        "/commands/CreateOrder",
        json={"order_id": order_id},
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert_problem(resp, 400, "malformed-request")


def test_form_content_type_from_plain_curl_is_accepted(client: httpx.Client, order_id: str) -> None:
    # `curl -d '{...}'` sends application/x-www-form-urlencoded; the body is still JSON.
    raw = orjson.dumps(
        {"order_id": order_id, "customer": "c", "items": [{"sku": "a", "qty": 1, "price": 1}]}
    ).decode()
    resp = client.post(
        "/commands/CreateOrder",
        content=raw.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(
    ("method", "path", "hot"),
    [
        ("POST", "/commands/CreateOrder", True),
        ("POST", "/commands/", False),  # no type: the router's 404
        ("POST", "/commands/CreateOrder/extra", False),
        ("GET", "/commands/CreateOrder", False),  # the router's 405
        ("POST", "/aggregates/Order/o1", False),
    ],
)
def test_the_hot_path_takes_only_its_route(method: str, path: str, hot: bool) -> None:
    assert serves({"type": "http", "method": method, "path": path, "root_path": ""}) is hot
    mounted = {"type": "http", "method": method, "path": path, "root_path": "/api"}
    assert serves(mounted) is False  # under a root path: Starlette's router decides


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/commands/", 404), ("POST", "/commands/CreateOrder/x", 404),
     ("GET", "/commands/CreateOrder", 405)],
)  # fmt: skip
def test_requests_beside_the_hot_path_get_the_routers_problems(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    answer = client.request(method, path, json={})
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["x-request-id"]  # RequestContext runs on both paths


def test_the_hot_path_answers_with_a_request_id(client: httpx.Client, order_id: str) -> None:
    body = {"order_id": order_id, "customer": "c", "items": [{"sku": "a", "qty": 1, "price": 2}]}
    answer = client.post("/commands/CreateOrder", json=body, headers={"X-Request-Id": "mine-1"})
    assert answer.status_code == 201
    assert answer.headers.get_list("x-request-id") == ["mine-1"]
    assert "date" in answer.headers  # uvicorn's default headers on the one-write answer too
    assert answer.headers["location"] == f"/streams/Order-{order_id}"


def test_the_hot_paths_problems_carry_the_request_id(client: httpx.Client, order_id: str) -> None:
    answer = client.post(
        "/commands/PayOrder",
        json={"order_id": order_id, "amount": 1},
        headers={"X-Request-Id": "mine-2"},
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["x-request-id"] == "mine-2"
    assert len(answer.headers.get_list("x-request-id")) == 1  # once, not once per layer
