"""GET /inbox in-process: what a browser test cannot easily bring about (a timer no daemon
fired, a projection stopped), the document's schema, and skip's problems."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.http.app import create_app
from catgad.http.inbox import Inbox
from catgad.processes.runner import ProcessRunner, row_of
from catgad.processes.state import begin
from catgad.runtime import Runtime
from catgad.store.memory import MemoryStore
from tests.ui.conftest import SHOP_YAML


@pytest.fixture(params=[True])
async def runtime(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    """The shop with its projections and reactors running (param False: none running)."""
    config = load_config(SHOP_YAML, env={"CATGAD_READ_SQLITE_PATH": str(tmp_path / "r.db")})
    async with Runtime.start(config, store=MemoryStore(), projections=request.param) as rt:
        yield rt


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://catgad") as c:
        yield c


async def inbox(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/inbox")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    doc = (await client.get("/openapi.json")).json()
    Draft202012Validator({"$ref": "#/components/schemas/Inbox", **doc}).validate(body)
    return body


@pytest.mark.parametrize("runtime", [False], indirect=True)
async def test_a_timer_past_due_and_not_fired_is_overdue(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    runner = runtime.reactor("processes")
    assert isinstance(runner, ProcessRunner)
    process = runner.definition("Fulfilment")
    two_hours_ago = time.time() - 7200
    placed = Envelope(type="OrderPlaced", source="t", data={"order_id": "t1", "amount": 10})
    made = begin(process, "t1", placed, two_hours_ago)
    stream = process.stream("t1")
    envelopes = [
        runner.decision(stream, "commit-t1", i, d, two_hours_ago, None) for i, d in enumerate(made)
    ]
    await runtime.store.append(stream, envelopes, expected_version=0, command_id="commit-t1")
    # indexed as the driving daemon does after its append, which then got stuck: nothing
    # here drives (fires) it
    await runner.index.put("Fulfilment", [row_of(await runner.instance("Fulfilment", "t1"))])
    runner.drive = False
    await runner.start()
    try:
        body = await inbox(client)
        (late,) = [i for i in body["items"] if i["kind"] == "overdue_timer"]
        assert late["key"] == "overdue_timer:Fulfilment:t1"
        assert late["subject"]["state"] == "awaiting_payment" and late["actions"] == []
        assert "overdue by 36" in late["title"] and "expired" in late["detail"]
        assert body["counts"]["overdue_timer"] == 1
        metrics = (await client.get("/metrics")).text
        assert 'catgad_inbox_items{kind="overdue_timer"} 1.0' in metrics
    finally:
        await runner.stop()


async def test_a_stopped_projection_waits_for_a_person(client: httpx.AsyncClient) -> None:
    assert (await inbox(client))["counts"]["projection"] == 0
    assert (await client.post("/projections/orders/stop")).status_code == 200
    (item,) = [i for i in (await inbox(client))["items"] if i["kind"] == "projection"]
    assert item["title"] == "projection orders is stopped"
    assert [(a["name"], a["href"], a["scope"]) for a in item["actions"]] == [
        ("start", "/projections/orders/start", "manage"),
        ("rebuild", "/projections/orders/rebuild", "manage"),
    ]
    assert (await client.post(item["actions"][0]["href"])).status_code == 200
    assert (await inbox(client))["counts"]["projection"] == 0


async def test_skip_names_what_it_cannot_find(client: httpx.AsyncClient) -> None:
    nothing = await client.post("/projections/unit_prices/skip", params={"event_id": "nope"})
    assert nothing.status_code == 404
    assert "open dead letter of projection 'unit_prices'" in nothing.json()["detail"]
    assert (await client.post("/projections/nope/skip")).status_code == 404
    none_open = await client.post("/projections/orders/skip")
    assert none_open.json() == {"projection": "orders", "skipped": []}
    validate((await client.get("/openapi.json")).json())


async def test_the_gauge_is_refreshed_while_serving(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Without anyone asking for GET /inbox: the app's lifespan gathers it (at once, then
    every REFRESH seconds), so an alert sees a projection stopped behind its back."""
    await runtime.projections.set_running("orders", False)
    registry = runtime.metrics.registry
    inbox = Inbox(runtime)
    async with inbox.lifespan(None), asyncio.timeout(10):
        for _ in itertools.count():
            if registry.get_sample_value("catgad_inbox_items", {"kind": "projection"}) == 1:
                break
            await asyncio.sleep(0.02)
    assert registry.get_sample_value("catgad_inbox_items", {"kind": "approval"}) == 0
