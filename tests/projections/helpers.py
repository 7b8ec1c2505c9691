"""Driving projections in-process: append events, wait for a projection to catch up."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from catgad.envelope import Envelope
from catgad.projections.manager import ProjectionManager
from catgad.projections.runner import ProjectionRunner, RunnerSettings
from catgad.store.protocol import EventStore

FAST = RunnerSettings(lease_ttl=0.6, poll_interval=0.02, backoff_initial=0.01, backoff_max=0.05)
_commands = itertools.count()


async def emit(store: EventStore, type_: str, cid: str = "a", **data: Any) -> int:
    """Append one event to Counter-<cid>; its position."""
    envelope = Envelope(type=type_, data={"cid": cid, **data}, source="tests")
    result = await store.append(
        f"Counter-{cid}", [envelope], expected_version=None, command_id=f"c{next(_commands)}"
    )
    return result.events[-1].position or 0


async def head(store: EventStore) -> int:
    last = 0
    while batch := await store.read_all(after=last, limit=1000):
        last = batch[-1].position or last
    return last


async def caught_up(runner: ProjectionRunner, store: EventStore, within: float = 10.0) -> None:
    runner.notify()
    async with asyncio.timeout(within):
        await runner.caught_up(await head(store))


async def settled(manager: ProjectionManager, within: float = 10.0) -> None:
    """Every projection of the manager has applied every stored event."""
    for runner in manager.runners.values():
        await caught_up(runner, manager.store, within)
