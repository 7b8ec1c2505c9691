"""The orders example end to end: a real daemon, the Python plugin and the Node.js webhook."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.handlers.servers import SECRET, WebhookServer
from tests.helpers.api import PROBLEM_BASE, assert_problem, create_order
from tests.helpers.daemon import ORDERS_YAML, Daemon, run_cli
from tests.support.ports import free_port


@pytest.mark.node
def test_plugin_and_webhook_commands_over_http(tmp_path: Path, node_modules: Path) -> None:
    with WebhookServer.node_example(node_modules, SECRET) as server:
        env = {"ORDERS_WEBHOOK_URL": server.url("/gift-note"), "ORDERS_WEBHOOK_SECRET": SECRET}
        with Daemon(ORDERS_YAML, tmp_path, env=env) as daemon, daemon.client() as client:
            assert create_order(client, "o1").status_code == 201  # total 900

            discount = client.post(
                "/commands/ApplyDiscount", json={"order_id": "o1", "code": "TEN", "percent": 10}
            )
            assert discount.status_code == 200, discount.text
            (event,) = discount.json()["events"]
            assert event["type"] == "DiscountApplied" and event["data"]["amount"] == 90

            again = client.post(
                "/commands/ApplyDiscount", json={"order_id": "o1", "code": "TWO", "percent": 5}
            )
            problem = assert_problem(again, 409, "command-rejected")
            assert problem["detail"] == "the order already has a 10% discount"
            assert problem["handler"] == "discounts"

            note = client.post("/commands/AddGiftNote", json={"order_id": "o1", "note": "Enjoy"})
            assert note.status_code == 200, note.text
            assert note.json()["events"][0]["data"] == {"order_id": "o1", "note": "Enjoy"}

            state = client.get("/aggregates/Order/o1").json()["state"]
            assert (state["total"], state["discount"], state["gift_note"]) == (810, 10, "Enjoy")

            missing = client.post("/commands/AddGiftNote", json={"order_id": "nope", "note": "x"})
            assert assert_problem(missing, 409, "command-rejected")["detail"] == (
                "order nope does not exist"
            )
        stats = server.stats()  # 2 commands; a retry after a timeout on a loaded machine is fine
        assert stats["verified"] >= 2 and stats["unverified"] == 0


def test_webhook_down_is_a_503_naming_the_handler(tmp_path: Path) -> None:
    env = {"ORDERS_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/gift-note"}
    with Daemon(ORDERS_YAML, tmp_path, env=env) as daemon, daemon.client() as client:
        assert create_order(client, "o1").status_code == 201
        response = client.post("/commands/AddGiftNote", json={"order_id": "o1", "note": "x"})
        problem = assert_problem(response, 503, "handler-unavailable")
        assert problem["handler"] == "gift-notes" and problem["attempts"] == 3
        assert response.headers["retry-after"]
        assert client.get("/streams/Order-o1").json()["version"] == 1


def test_the_python_example_server_serves_the_same_command(tmp_path: Path) -> None:
    with WebhookServer.python_example(SECRET) as server:
        env = {"ORDERS_WEBHOOK_URL": server.url("/gift-note"), "ORDERS_WEBHOOK_SECRET": SECRET}
        with Daemon(ORDERS_YAML, tmp_path, env=env) as daemon, daemon.client() as client:
            assert create_order(client, "o1").status_code == 201
            note = client.post("/commands/AddGiftNote", json={"order_id": "o1", "note": "Hi"})
            assert note.status_code == 200, note.text
        assert server.stats() == {"verified": 1, "unverified": 0}


def test_catgad_test_runs_the_example_without_any_server() -> None:
    done = run_cli("test", str(ORDERS_YAML))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# SKIP" not in done.stdout  # the webhook's scenarios stub its reply
    assert PROBLEM_BASE not in done.stdout
