"""`store: nats` with `bus: nats` on one server, every name left at its default.

The two used to collide: the store's subjects and those of the bus's `events`
topic were both `catgad.events.>`, which JetStream refuses in two streams, so
the relay could never publish. A private nats-server (for each supported
version) gives the test the defaults without touching anyone else's streams.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import nats
import pytest

from catgad.bus.topics import COMMANDS_TOPIC, EVENTS_TOPIC, nats_overlap
from catgad.store.nats_codec import DEFAULT_SUBJECT_PREFIX
from tests.helpers.api import create_order
from tests.helpers.daemon import Daemon, edited_example
from tests.servers.nats import NatsServer
from tests.support.waiting import eventually

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def test_the_default_store_and_bus_subjects_do_not_overlap() -> None:
    assert nats_overlap(DEFAULT_SUBJECT_PREFIX, "catgad", [EVENTS_TOPIC, COMMANDS_TOPIC]) is None
    # and the check finds the pairs that do
    assert nats_overlap("catgad.events", "catgad", [EVENTS_TOPIC, COMMANDS_TOPIC]) == "events"
    assert nats_overlap("shop", "shop", ["events"]) == "events"  # shop.> holds shop.events.>
    assert nats_overlap("shop.store", "shop", ["events", "commands"]) is None
    assert nats_overlap("shop.eventsx", "shop", ["events"]) is None
    assert nats_overlap("a.commands.x", "a", ["events", "commands"]) == "commands"
    assert nats_overlap("a", "a.b", ["c"]) == "c"  # a.> holds a.b.c.>


def all_nats_config(tmp_path: Path, url: str) -> Path:
    old_store = (
        "store:\n  kind: sqlite\n  path: ${CATGAD_SQLITE_PATH:-orders.db}\n  synchronous: full\n"
    )
    return edited_example(
        tmp_path / "config",
        {
            old_store: f"store: {{kind: nats, url: {url}}}\n",
            "\nbus: memory\n": f"\nbus: {{kind: nats, url: {url}}}\n",
        },
    )


async def relayed(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("catgad__events")
        return int(info.state.messages)
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


def test_commands_are_stored_and_relayed_with_the_defaults(
    private_nats_server: NatsServer, tmp_path: Path
) -> None:
    server = private_nats_server
    daemon = Daemon(all_nats_config(tmp_path, server.url), tmp_path / "run").start()
    try:
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            for n in range(3):
                resp = create_order(client, f"o{n}")
                assert resp.status_code == 201, resp.text
        eventually(lambda: asyncio.run(relayed(server.url)) >= 3, 20, "3 events relayed",
                   interval=0.1)  # fmt: skip
        assert "overlap" not in daemon.logs()
    finally:
        daemon.stop()
