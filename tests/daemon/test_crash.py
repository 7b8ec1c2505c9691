"""kill -9 under load loses no acknowledged command and leaves nothing half-written.

Fifty clients create and pay orders as fast as they can; the daemon is killed
mid-flight and restarted on the same SQLite file. Every command answered 2xx
must be in its stream exactly once, versions must be contiguous, and a retry
(same Idempotency-Key) of each command left without an answer must apply it
at most once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.daemon import ORDERS_YAML, Daemon

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]

CLIENTS = 50
KILL_AFTER_ACKS = 250  # acknowledged commands before the kill
EVENT_OF = {"CreateOrder": "OrderCreated", "PayOrder": "OrderPaid"}


@dataclass
class Sent:
    command_id: str
    command: str
    stream: str
    body: dict[str, Any]


@dataclass
class Ledger:
    acked: list[Sent] = field(default_factory=list)
    unanswered: list[Sent] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    enough: asyncio.Event = field(default_factory=asyncio.Event)


def commands_for(order_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("CreateOrder", {"order_id": order_id, "customer": "c",
                         "items": [{"sku": "s", "qty": 3, "price": 100}]}),
        ("PayOrder", {"order_id": order_id, "amount": 300}),
    ]  # fmt: skip


async def client_loop(daemon: Daemon, n: int, ledger: Ledger) -> None:
    async with daemon.async_client() as client:
        for i in range(100_000):
            order_id = f"c{n}-{i}"
            for command, body in commands_for(order_id):
                sent = Sent(str(uuid.uuid4()), command, f"Order-{order_id}", body)
                try:
                    resp = await client.post(
                        f"/commands/{command}",
                        json=body,
                        headers={"Idempotency-Key": sent.command_id},
                    )
                except httpx.TransportError:
                    ledger.unanswered.append(sent)  # in doubt: applied or not, never half
                    return
                if not resp.is_success:
                    ledger.unexpected.append(f"{command} {resp.status_code} {resp.text}")
                    return
                ledger.acked.append(sent)
                if len(ledger.acked) >= KILL_AFTER_ACKS:
                    ledger.enough.set()


async def stream_events(client: httpx.AsyncClient, stream: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/streams/{stream}")
    if resp.status_code == 404:
        return []
    assert resp.status_code == 200, resp.text
    events: list[dict[str, Any]] = resp.json()["events"]
    return events


def check_stream(stream: str, events: list[dict[str, Any]], known: dict[str, Sent]) -> None:
    """Contiguous versions, unique ids, each event caused by a command we sent for this stream."""
    assert [e["streamversion"] for e in events] == list(range(1, len(events) + 1)), stream
    assert len({e["id"] for e in events}) == len(events), stream
    for event in events:
        sent = known.get(event["causationid"])
        assert sent is not None, f"{stream}: event from an unknown command {event}"
        assert sent.stream == stream
        assert event["type"] == EVENT_OF[sent.command]
        assert event["data"]["order_id"] == sent.body["order_id"]


async def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    daemon = Daemon(ORDERS_YAML, tmp_path).start()
    ledger = Ledger()
    try:
        tasks = [asyncio.create_task(client_loop(daemon, n, ledger)) for n in range(CLIENTS)]
        await asyncio.wait_for(ledger.enough.wait(), timeout=120)
        assert await asyncio.to_thread(daemon.kill) == -9
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        assert ledger.unexpected == []
        assert ledger.unanswered, "the kill should have caught requests in flight"

        with sqlite3.connect(daemon.db_path) as db:  # the file itself survived intact
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        daemon.start()
        known = {s.command_id: s for s in ledger.acked + ledger.unanswered}
        streams = sorted({s.stream for s in known.values()})
        async with daemon.async_client() as client:
            before = {s: await stream_events(client, s) for s in streams}
            for stream, events in before.items():
                check_stream(stream, events, known)
            caused = [e["causationid"] for events in before.values() for e in events]
            for sent in ledger.acked:
                assert caused.count(sent.command_id) == 1, f"acknowledged {sent} not stored once"

            # Retrying each unanswered command with its key applies it at most once.
            for sent in ledger.unanswered:
                resp = await client.post(
                    f"/commands/{sent.command}",
                    json=sent.body,
                    headers={"Idempotency-Key": sent.command_id},
                )
                stored = sent.command_id in caused
                if stored:
                    assert resp.status_code == 200 and resp.json()["duplicate"] is True
                else:
                    # not applied before the crash: it applies now, or the state rejects it
                    # (a Pay whose Create never landed: 422), but it is never doubled
                    assert resp.status_code in (200, 201, 422), resp.text
            for stream in streams:
                events = await stream_events(client, stream)
                check_stream(stream, events, known)
                ids = [e["causationid"] for e in events]
                assert len(ids) == len(set(ids)), f"{stream}: a command applied twice"
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
