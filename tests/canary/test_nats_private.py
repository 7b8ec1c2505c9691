"""nats-py's private parts that the NATS store uses (catgad/store/nats_wire.py), and its
public fallback.

The store writes request frames into nats-py's output buffer, resolves replies
where nats-py parses them and takes publish acks before its message
processing: each through private names, found at connect, with nats-py's
public calls when one is missing. pyproject caps nats-py below the next minor
release; these tests fail loudly when a release moves what the store touches,
and the fallback runs the store contract on public calls only.
"""

from __future__ import annotations

import asyncio
import inspect
from contextlib import AbstractAsyncContextManager
from importlib.metadata import version

import nats
import nats.protocol.parser
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from catgad.store import nats_wire
from catgad.store.nats_wire import Wire
from catgad.store.protocol import EventStore
from tests.contracts.store import EventStoreContract
from tests.servers.nats import nats_store, server_url

pytestmark = pytest.mark.nats

BREAKS = (
    f"nats-py {version('nats-py')} changed what catgad/store/nats_wire.py uses of it; "
    "the NATS store would fall back to public calls (slower) or break"
)


async def _nothing() -> None:
    return None


async def test_the_store_connection_takes_every_shortcut() -> None:
    wire = Wire(server_url("current"), timeout=5.0)
    await wire.connect(_nothing)
    try:
        assert wire.shortcuts == {"handover", "dispatch", "frames"}, BREAKS
        reply = await (await wire.send("$JS.API.INFO", b""))
        assert b'"type":"io.nats.jetstream.api.v1.account_info_response"' in reply.data
    finally:
        await wire.close()


def test_the_client_attributes_have_the_shapes_used() -> None:
    nc = Client()
    assert isinstance(nc._pending, list), BREAKS
    assert isinstance(nc._pending_data_size, int), BREAKS
    assert isinstance(nc._max_pending_size, int), BREAKS
    assert nc._flush_queue is None and nc._flusher_task is None, BREAKS
    params = list(inspect.signature(Client._process_msg).parameters)
    assert params[:6] == ["self", "sid", "subject", "reply", "data", "headers"], BREAKS


def test_messages_reach_subscriptions_and_dispatch_as_the_store_expects() -> None:
    # the parser looks _process_msg up on the client at every message (so the store's
    # replacement is called), and _process_msg hands a message to its subscription's
    # _pending_queue with put_nowait (so _Handover receives it)
    parser = inspect.getsource(nats.protocol.parser.Parser)
    assert "self.nc._process_msg(" in parser, BREAKS
    assert "_pending_queue.put_nowait(" in inspect.getsource(Client._process_msg), BREAKS


async def test_a_frame_queued_for_the_flusher_is_sent() -> None:
    # the "frames" shortcut: appended to _pending and a future on _flush_queue, nats-py's
    # flusher task writes it
    nc = await nats.connect(server_url("current"))
    try:
        got: asyncio.Queue[Msg] = asyncio.Queue()
        subject = nc.new_inbox()
        await nc.subscribe(subject, cb=got.put)
        await nc.flush()
        frame = nats_wire._frame(subject, "", b"sent", {"X-Test": "1"})
        assert nats_wire._queue(nc, frame), BREAKS
        async with asyncio.timeout(5):
            msg = await got.get()
        assert (msg.data, msg.headers) == (b"sent", {"X-Test": "1"}), BREAKS
    finally:
        await nc.close()


class TestNATSStoreOnPublicCallsOnly(EventStoreContract):
    """The fallback: every private name looked for at connect is taken as missing."""

    @pytest.fixture(autouse=True)
    def _no_private_parts(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in (
            "_SUBSCRIPTION_QUEUE",
            "_CLIENT_DISPATCH",
            "_SUBSCRIPTION_ID",
            "_CLIENT_INTERNALS",
        ):
            monkeypatch.setattr(nats_wire, name, (*getattr(nats_wire, name), "_not_there"))

    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return nats_store(server_url("current"))

    async def test_the_store_uses_no_private_part(self) -> None:
        async with self.make_store() as store:
            assert store._wire is not None
            assert store._wire.shortcuts == frozenset()
