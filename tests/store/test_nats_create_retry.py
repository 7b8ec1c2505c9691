"""A stream the JetStream server fails to create (status 500) is tried again before the store
gives up.

A real server, with a file standing where it would make the stream's directory, answers
the first create with what CI once met for a moment (status 500, error 10049, "error
creating store for stream") and the next with the stream: a store that gave up at once
(as before) failed to open; now it logs the failure, tries again, and opens."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from catgad.envelope import Envelope
from catgad.store.nats import NATSStore
from tests.servers.nats import NatsServer, binary_for

pytestmark = pytest.mark.nats
WARNED = "could not create stream"


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[tuple[NatsServer, NATSStore, Path]]:
    """A server, a store, and a file standing where the server would make the store's main
    stream's directory."""
    unique = uuid.uuid4().hex[:12]
    streams = tmp_path / "jetstream" / "$G" / "streams"
    streams.mkdir(parents=True)
    blocker = streams / f"T{unique}"
    blocker.write_text("in the way")
    server = NatsServer(binary_for("current"), store_dir=tmp_path).start()
    store = NATSStore(server.url, stream=f"T{unique}", subject_prefix=f"test.{unique}.events")
    yield server, store, blocker
    server.close()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if WARNED in r.getMessage()]


async def test_a_create_the_server_failed_once_succeeds_on_a_later_try(
    blocked: tuple[NatsServer, NATSStore, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="catgad.store.nats_wire")
    _, store, _ = blocked
    await asyncio.wait_for(store.open(), 20)
    try:
        (warned,) = warnings(caplog)  # the first create failed, the second did not
        assert "error creating store for stream (status 500, error 10049)" in warned
        event = Envelope(type="Tried", data={"n": 1}, source="test", subject="Order-1")
        result = await store.append("Order-1", [event], expected_version=0, command_id="c1")
        assert result.version == 1
        assert [e.data for e in await store.read("Order-1")] == [{"n": 1}]
    finally:
        await store.close()
