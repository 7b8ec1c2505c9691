"""The app in-process over ASGI, with a store that fails on demand: 500 and 503 problems."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.errors import Unavailable
from catgad.http import create_app
from catgad.observability.logs import configure_logging
from catgad.runtime import Runtime
from catgad.store.memory import MemoryStore
from catgad.store.protocol import AppendResult
from tests.helpers.daemon import ORDERS_YAML

ORDER = {"order_id": "o1", "customer": "c", "items": [{"sku": "a", "qty": 1, "price": 3}]}


class FlakyStore(MemoryStore):
    """A memory store whose reads, appends and pings raise `failure` while it is set."""

    failure: Exception | None = None

    def _maybe_fail(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def ping(self) -> None:
        self._maybe_fail()
        await super().ping()

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> list[Envelope]:
        self._maybe_fail()
        return await super().read(stream, after=after, limit=limit)

    async def append(self, stream: str, events: Sequence[Envelope], **kwargs: Any) -> AppendResult:
        self._maybe_fail()
        return await super().append(stream, events, **kwargs)


@pytest.fixture
async def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
async def client(store: FlakyStore) -> AsyncIterator[httpx.AsyncClient]:
    config = load_config(ORDERS_YAML)
    async with Runtime.start(config, store=store) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://catgad") as c:
            yield c


async def test_unexpected_error_is_a_generic_500_logged_with_request_id(
    client: httpx.AsyncClient, store: FlakyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=True)
    store.failure = RuntimeError("secret internals")
    resp = await client.get("/streams/Order-o1")
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["type"] == "https://catgad.dev/problems/internal"
    assert body["instance"] == "/streams/Order-o1"
    rid = resp.headers["x-request-id"]
    assert body["request_id"] == rid
    assert rid in body["detail"]
    assert "secret internals" not in resp.text
    log = capsys.readouterr().err
    assert "secret internals" in log
    assert "Traceback" in log
    assert rid in log


async def test_store_unavailable_is_503_with_retry_after(
    client: httpx.AsyncClient, store: FlakyStore
) -> None:
    store.failure = Unavailable("sqlite store", "disk unplugged")
    resp = await client.post("/commands/CreateOrder", json=ORDER)
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    body = resp.json()
    assert body["type"] == "https://catgad.dev/problems/unavailable"
    assert body["dependency"] == "sqlite store"
    assert "disk unplugged" in body["detail"]

    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    assert ready.json()["dependency"] == "sqlite store"

    assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
    metrics = (await client.get("/metrics")).text
    assert 'catgad_commands_total{command="CreateOrder",outcome="unavailable"} 1.0' in metrics


async def test_store_recovering(client: httpx.AsyncClient, store: FlakyStore) -> None:
    store.failure = Unavailable("sqlite store", "locked")
    assert (await client.post("/commands/CreateOrder", json=ORDER)).status_code == 503
    store.failure = None
    assert (await client.post("/commands/CreateOrder", json=ORDER)).status_code == 201
    assert (await client.get("/readyz")).status_code == 200
