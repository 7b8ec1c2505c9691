"""The projection endpoints over HTTP (in-process ASGI): status, control, reads, problems."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from catgad.app.load import load_config
from catgad.http.app import create_app
from catgad.runtime import Runtime
from catgad.store.memory import MemoryStore
from tests.helpers.api import assert_problem
from tests.helpers.daemon import ORDERS_YAML
from tests.projections.helpers import FAST, settled


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    env = {
        "CATGAD_READ_SQLITE_PATH": str(tmp_path / "read.db"),
        "CATGAD_REDIS_PROJECTIONS": "false",
    }
    config = load_config(ORDERS_YAML, env=env)
    async with Runtime.start(config, store=MemoryStore(), relay=False) as rt:
        rt.projections.settings = FAST
        await rt.projections.stop()  # built without running: run them with FAST settings
        await rt.projections.start(run=True)
        yield rt


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://catgad") as c:
        yield c


async def order(client: httpx.AsyncClient, order_id: str, customer: str, price: int) -> None:
    body = {
        "order_id": order_id,
        "customer": customer,
        "items": [{"sku": "s", "qty": 1, "price": price}],
    }
    assert (await client.post("/commands/CreateOrder", json=body)).status_code == 201


async def test_status_list_and_one(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await order(client, "o1", "ann", 100)
    await settled(runtime.projections)
    listed = (await client.get("/projections")).json()["projections"]
    by_name = {p["name"]: p for p in listed}
    assert set(by_name) == {"orders", "customer_totals", "order-notifications"}
    assert by_name["customer_totals"]["enabled"] is False
    orders = (await client.get("/projections/orders")).json()
    assert (
        orders["status"] == "running" and orders["checkpoint"] == 1 and orders["lag"]["events"] == 0
    )
    assert orders["dead_letters"]["count"] == 0
    assert orders["target"]["kind"] == "sqlite" and orders["target"]["table"] == "orders"
    assert_problem(await client.get("/projections/nope"), 404, "not-found")


async def test_reads_by_key_and_by_indexed_column(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    for i in range(5):
        await order(client, f"o{i}", "ann" if i % 2 else "bob", 100 * i)
    await client.post("/commands/PayOrder", json={"order_id": "o1", "amount": 100})
    await settled(runtime.projections)
    row = (await client.get("/read/orders/o1")).json()
    assert row == {"key": "o1", "customer": "ann", "status": "paid", "total": 100, "tracking": None}
    page = (await client.get("/read/orders", params={"customer": "bob", "limit": 2})).json()
    assert [r["key"] for r in page["rows"]] == ["o0", "o2"]
    assert page["next"] and "cursor=" in page["next"]
    rest = (await client.get(page["next"])).json()
    assert [r["key"] for r in rest["rows"]] == ["o4"] and rest["next"] is None
    everything = (await client.get("/read/orders")).json()
    assert len(everything["rows"]) == 5
    assert_problem(await client.get("/read/orders/nope"), 404, "not-found")
    assert_problem(await client.get("/read/nope/x"), 404, "not-found")
    problem = assert_problem(await client.get("/read/orders?total=3"), 400, "malformed-request")
    assert "not an indexed column" in problem["detail"]
    assert_problem(await client.get("/read/orders?status=a&customer=b"), 400, "malformed-request")
    # a cursor is the key of the last row seen: any string but one with a NUL (no key has one)
    after = (await client.get("/read/orders", params={"cursor": "o1"})).json()
    assert [r["key"] for r in after["rows"]] == ["o2", "o3", "o4"]
    assert (await client.get("/read/orders?cursor=zzz")).json()["rows"] == []
    assert_problem(await client.get("/read/orders?cursor=o%00"), 400, "malformed-request")
    assert_problem(await client.get("/read/orders?limit=0"), 400, "malformed-request")
    problem = assert_problem(
        await client.get("/read/order-notifications/x"), 409, "projection-disabled"
    )


async def test_stop_start_rebuild(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await order(client, "o1", "ann", 100)
    await settled(runtime.projections)
    stopped = await client.post("/projections/orders/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    await order(client, "o2", "ann", 100)
    assert (await client.get("/projections/orders")).json()["lag"]["events"] >= 1
    started = await client.post("/projections/orders/start")
    assert started.json()["status"] in ("running", "rebuilding")
    rebuild = await client.post("/projections/orders/rebuild")
    assert rebuild.status_code in (200, 202) and rebuild.json()["rebuild_started"] is True
    await settled(runtime.projections)
    assert (await client.get("/read/orders/o2")).json()["customer"] == "ann"
    replay = await client.post("/projections/orders/replay")
    assert replay.json() == {"projection": "orders", "replayed": [], "failed": []}
    assert_problem(await client.post("/projections/nope/stop"), 404, "not-found")


async def test_a_target_that_cannot_be_reached_waits_and_commands_go_on(
    tmp_path: Path,
) -> None:
    env = {
        "CATGAD_READ_SQLITE_PATH": str(tmp_path / "read.db"),
        "CATGAD_REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there
    }
    config = load_config(ORDERS_YAML, env=env)
    async with Runtime.start(config, store=MemoryStore(), relay=False) as rt:
        rt.projections.settings = dataclasses.replace(FAST, backoff_max=0.05)
        await rt.projections.stop()
        await rt.projections.start(run=True)
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://catgad") as client:
            await order(client, "o1", "ann", 100)
            assert (await client.get("/readyz")).status_code == 200
            await settled_one(rt, "orders")
            status = (await client.get("/projections/customer_totals")).json()
            assert status["status"] == "running" and status["retrying"] is True
            assert "127.0.0.1:1" in status["last_error"]
            assert_problem(await client.get("/read/customer_totals/ann"), 503, "unavailable")
            assert (await client.get("/read/orders/o1")).status_code == 200


async def settled_one(runtime: Runtime, name: str) -> None:
    from tests.projections.helpers import caught_up

    await caught_up(runtime.projections.runner(name), runtime.store)


def test_openapi_lists_the_projection_routes(tmp_path: Path) -> None:
    from openapi_spec_validator import validate

    from catgad.http.openapi import build_openapi

    doc = build_openapi(load_config(ORDERS_YAML, env={}))
    validate(doc)
    for path in (
        "/projections",
        "/projections/{name}",
        "/read/{projection}",
        "/read/{projection}/{key}",
    ):
        assert path in doc["paths"], path
    for verb in ("rebuild", "stop", "start", "replay"):
        assert "post" in doc["paths"][f"/projections/{{name}}/{verb}"]
    row = doc["components"]["schemas"]["Row.orders"]
    assert row["properties"]["total"] == {"type": ["integer", "null"], "default": 0}
