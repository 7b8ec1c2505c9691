"""Signatures checked by the official Standard Webhooks libraries, in Node.js and in Python.

The servers are the examples of examples/webhooks: real processes that verify
every request with `standardwebhooks` (npm and PyPI) before deciding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from catgad.config import load_config
from catgad.engine.commands import CommandEngine, CommandResult
from catgad.errors import BadReply, CommandRejected
from catgad.handlers.registry import HandlerRegistry
from catgad.store.memory import MemoryStore

from .servers import OLD_SECRET, SECRET, WebhookServer

ORDERS = Path(__file__).resolve().parents[2] / "config" / "examples" / "orders.yaml"
RAW_SECRET = "correct horse battery staple"  # not whsec_: its UTF-8 bytes are the key
ORDER = {"order_id": "o1", "customer": "ada", "items": [{"sku": "tea", "qty": 1, "price": 300}]}

Start = Callable[[str], WebhookServer]


@pytest.fixture(params=["node", "python"])
def start_server(request: pytest.FixtureRequest) -> Start:
    """Start the example server in one language, knowing one secret."""
    if request.param == "node":
        request.applymarker(pytest.mark.node)
        modules: Path = request.getfixturevalue("node_modules")
        return lambda secret: WebhookServer.node_example(modules, secret).start()
    return lambda secret: WebhookServer.python_example(secret).start()


@asynccontextmanager
async def orders(server: WebhookServer, secret: Any) -> AsyncIterator[CommandEngine]:
    """The orders example in-process, its gift-note webhook at `server`, signing with `secret`."""
    config = load_config(ORDERS, env={"ORDERS_WEBHOOK_URL": server.url("/gift-note")})
    if secret is None:
        config.handlers["gift-notes"].options.pop("secret")
    else:
        config.handlers["gift-notes"].options["secret"] = secret
    handlers = HandlerRegistry.from_config(config)
    store = MemoryStore()
    await store.open()
    try:
        engine = CommandEngine(config, store, handlers=handlers)
        await engine.execute("CreateOrder", ORDER)
        yield engine
    finally:
        await handlers.close()
        await store.close()


async def gift_note(engine: CommandEngine, note: str = "Happy birthday") -> CommandResult:
    return await engine.execute("AddGiftNote", {"order_id": "o1", "note": note})


@pytest.mark.parametrize("secret", [SECRET, RAW_SECRET], ids=["whsec", "raw"])
async def test_the_official_library_verifies_the_signature(
    start_server: Start, secret: str
) -> None:
    server = start_server(secret)
    try:
        async with orders(server, secret) as engine:
            result = await gift_note(engine)
            assert [(e.type, e.data) for e in result.events] == [
                ("GiftNoteAdded", {"order_id": "o1", "note": "Happy birthday"})
            ]
            assert result.events[0].dataschemaversion == 2
            _, loaded = await engine.aggregate_state("Order", "o1")
            assert loaded.state["gift_note"] == "Happy birthday"
        assert server.stats() == {"verified": 1, "unverified": 0}
    finally:
        server.stop()


@pytest.mark.parametrize("knows", ["new", "old"])
async def test_rotation_two_active_secrets(start_server: Start, knows: str) -> None:
    """During a rotation catgad signs with both; a server knowing either one verifies."""
    server = start_server(SECRET if knows == "new" else OLD_SECRET)
    try:
        async with orders(server, [SECRET, OLD_SECRET]) as engine:
            await gift_note(engine)
        assert server.stats() == {"verified": 1, "unverified": 0}
    finally:
        server.stop()


@pytest.mark.parametrize("secret", ["whsec_d3JvbmcgYW5kIHVua25vd24gc2VjcmV0", None])
async def test_a_wrong_or_missing_signature_is_refused(start_server: Start, secret: str) -> None:
    """The server refuses (401, no business reason): a 502 naming the handler, nothing appended."""
    server = start_server(SECRET)
    try:
        async with orders(server, secret) as engine:
            with pytest.raises(BadReply) as caught:
                await gift_note(engine)
            assert caught.value.handler == "gift-notes"
            assert "answered 401 without a reason" in caught.value.detail
            assert await engine.store.stream_version("Order-o1") == 1
        assert server.stats() == {"verified": 0, "unverified": 1}
    finally:
        server.stop()


async def test_the_handler_rejects_for_a_business_reason(start_server: Start) -> None:
    server = start_server(SECRET)
    try:
        async with orders(server, SECRET) as engine:
            await engine.execute("PayOrder", {"order_id": "o1", "amount": 300})
            await engine.execute("ShipOrder", {"order_id": "o1", "tracking": "T1"})
            with pytest.raises(CommandRejected) as caught:
                await gift_note(engine)
            assert caught.value.reason == "the order is shipped: too late for a gift note"
            assert caught.value.status == 409
            assert await engine.store.stream_version("Order-o1") == 3
    finally:
        server.stop()
