"""Live projections take this process's own appends from the append feed, unread; a position
the feed lacks (another process appended it) is read from the store, in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from catgad.envelope import Envelope
from catgad.model import Config
from catgad.projections.feed import AppendFeed
from catgad.projections.manager import ProjectionManager
from catgad.store.memory import MemoryStore
from catgad.store.protocol import AppendResult
from tests.projections.conftest import BASE, PROJECTIONS
from tests.projections.helpers import FAST, settled
from tests.support.waiting import eventually_async


def result(*positions: int, duplicate: bool = False) -> AppendResult:
    events = [Envelope(type="Added", data={}, position=p) for p in positions]
    return AppendResult("S", "c", len(positions), events, duplicate)


def test_the_feed_answers_only_a_run_without_gaps_from_the_position_asked() -> None:
    feed = AppendFeed(keep=4)
    feed.add(result(1, 2))
    assert [e.position for e in feed.after(0, 10)] == [1, 2]
    assert [e.position for e in feed.after(0, 1)] == [1]  # the batch's limit
    assert feed.after(2, 10) == []  # nothing new
    feed.add(result(4))  # 3 came from another process
    assert feed.after(0, 10) == []  # a gap before the head: one read takes it all
    assert [e.position for e in feed.after(0, 2)] == [1, 2]  # the limit comes first
    assert feed.after(2, 10) == []  # 3 is not here: read it
    assert [e.position for e in feed.after(3, 10)] == [4]
    assert feed.head == 4
    feed.add(result(5, 6, 7))  # keeps the last 4 added: 1 and 2 go
    assert feed.after(0, 10) == [] and feed.after(1, 10) == []
    assert [e.position for e in feed.after(3, 10)] == [4, 5, 6, 7]
    feed.add(result(5, duplicate=True))  # a repeat's first result: held already
    assert [e.position for e in feed.after(3, 10)] == [4, 5, 6, 7] and feed.head == 7


class CountingStore(MemoryStore):
    """Counts the events live projections read back from the store."""

    def __init__(self) -> None:
        super().__init__()
        self.events_read = 0

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        found = await super().read_all(after=after, limit=limit)
        self.events_read += len(found)
        return found


@pytest.fixture
def config(write_config: Callable[[str], Config]) -> Config:
    return write_config(BASE + PROJECTIONS)


async def append(store: MemoryStore, cid: str, by: int, command: str) -> AppendResult:
    envelope = Envelope(type="Added", data={"cid": cid, "by": by, "group": "g"}, source="t")
    return await store.append(
        f"Counter-{cid}", [envelope], expected_version=None, command_id=command
    )


async def applied(manager: ProjectionManager, position: int) -> None:
    """Every runner's checkpoint at `position` (no store read: the store counts them)."""
    await eventually_async(
        lambda: all(r.position >= position for r in manager.runners.values()),
        10,
        f"every projection at position {position}",
    )


async def test_this_process_appends_are_applied_unread_and_anothers_are_read_in_order(
    config: Config,
) -> None:
    store = CountingStore()
    await store.open()
    manager = ProjectionManager(config, store, settings=FAST, owner="me")
    await manager.start()
    try:
        await settled(manager)  # active, caught up with the empty store
        before = store.events_read

        for i in range(20):  # appended here: the engine hands each result over
            manager.notify(await append(store, f"a{i}", 1, f"here-{i}"))
        await applied(manager, 20)
        assert store.events_read == before  # none of them read back

        manager.notify(await append(store, "b", 10, "here-b"))
        await append(store, "b", 100, "elsewhere")  # another process: nobody notified
        manager.notify(await append(store, "b", 1000, "here-b2"))
        await applied(manager, 23)
        assert store.events_read > before  # the gap was read from the store ...
        groups: list[dict[str, Any]] = (
            await manager.find("groups", None, None, limit=10, cursor=None)
        ).rows
        # ... and nothing skipped or applied twice: 20 x 1 + 10 + 100 + 1000, 23 events
        assert groups == [{"key": "g", "total": 1130, "count": 23}]
        counter = await manager.get("counters", "b")
        assert counter is not None and counter["total"] == 1000  # the last Added wins
    finally:
        await manager.stop()
