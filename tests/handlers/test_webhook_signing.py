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

from catgad.app.load import load_config
from catgad.engine.commands import CommandEngine, CommandResult
from catgad.errors import BadReply, CommandRejected
from catgad.handlers.registry import HandlerRegistry
from catgad.store.memory import MemoryStore
from tests.handlers.servers import OLD_SECRET, SECRET, WebhookServer

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


@pytest.mark.parametrize(
    "secrets",
    [
        [SECRET],
        [RAW_SECRET],
        ["k" * 64],  # exactly one block
        ["a raw key longer than SHA-256's 64-byte block, which HMAC hashes first" * 3],
        [SECRET, OLD_SECRET],
        [RAW_SECRET, SECRET, OLD_SECRET],
    ],
    ids=["whsec", "raw", "block", "long", "rotation", "three"],
)
def test_signatures_are_the_official_librarys_byte_for_byte(secrets: list[str]) -> None:
    """catgad computes the HMAC itself (a keyed HMAC copied per request); the official
    library must sign exactly the same, and verify it, for any body and any id."""
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    from catgad.handlers.signing import Signer, secret_key

    signer = Signer(secrets)
    hooks = [Webhook(secret_key(secret)) for secret in secrets]
    bodies = [
        b"{}",
        '{"note":"h\u00e9llo \u2603 \U0001f381"}'.encode(),
        b'{"a":"' + b"x" * 70000 + b'"}',
    ]
    for index, body in enumerate(bodies):
        message_id, now = f"msg_{index}", 1_700_000_000.9 + index
        headers = signer.headers(message_id, body, now=now)
        assert headers["webhook-timestamp"] == str(int(now))
        when = datetime.fromtimestamp(int(now), UTC)
        official = " ".join(hook.sign(message_id, when, body.decode()) for hook in hooks)
        assert headers["webhook-signature"] == official
        assert signer.header_values(message_id, body, now=now) == [
            (name.encode(), value.encode()) for name, value in headers.items()
        ]
        fresh = signer.headers(message_id, body)  # now: within the verifiers' tolerance
        for hook in hooks:
            assert hook.verify(body, fresh) is not None


def test_the_webhook_id_is_uuid5_of_the_command_and_version() -> None:
    import uuid

    from catgad.envelope import Envelope
    from catgad.handlers.protocol import HandlerRequest
    from catgad.handlers.webhook import _MESSAGE_NS, message_id

    for command_id, version in [("c1", 0), ("c1", 1), ("\u00e9t\u00e9/\u2603", 42)]:
        command = Envelope(type="T", data={}, id=command_id)
        request = HandlerRequest(command, {}, version)
        expected = uuid.uuid5(_MESSAGE_NS, f"{command_id}\0{version}").hex
        assert message_id(request) == "msg_" + expected
    first = message_id(HandlerRequest(Envelope(type="T", data={}, id="c1"), {}, 0))
    assert first != message_id(HandlerRequest(Envelope(type="T", data={}, id="c1"), {}, 1))
