"""A projection's consumer in-process: live, restart, poison events, rebuild, control, failover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from catgad.errors import NotFound
from catgad.model import Config
from catgad.projections.manager import ProjectionManager
from catgad.projections.section import PROJECTIONS as READ_MODELS
from catgad.store.memory import MemoryStore
from tests.projections.conftest import BASE, PROJECTIONS
from tests.projections.helpers import FAST, emit, settled
from tests.support.waiting import eventually_async


@asynccontextmanager
async def running(
    config: Config, store: MemoryStore, owner: str = "me", run: bool = True
) -> AsyncIterator[ProjectionManager]:
    manager = ProjectionManager(config, store, settings=FAST, owner=owner)
    await manager.start(run=run)
    try:
        yield manager
    finally:
        await manager.stop()


@pytest.fixture
def config(write_config: Callable[[str], Config]) -> Config:
    return write_config(BASE + PROJECTIONS)


async def rows(manager: ProjectionManager, name: str) -> list[dict[str, Any]]:
    return (await manager.find(name, None, None, limit=1000, cursor=None)).rows


async def test_live_events_reach_the_read_models(config: Config, store: MemoryStore) -> None:
    async with running(config, store) as manager:
        await emit(store, "Added", "a", by=2, group="g")
        await emit(store, "Added", "b", by=5, group="g")
        await emit(store, "Renamed", "a", name="Ann")
        await emit(store, "Removed", "b")
        await settled(manager)
        first = (await store.read_all())[0].id
        assert await manager.get("counters", "a") == {
            "key": "a", "total": 2, "name": "Ann", "group": "g", "last": first,
        }  # fmt: skip
        with pytest.raises(NotFound):
            await manager.get("counters", "b")
        assert await rows(manager, "groups") == [{"key": "g", "total": 7, "count": 2}]
        status = await manager.status("counters", detail=True)
        assert status["status"] == "running" and status["active_here"]
        assert status["checkpoint"] == status["head"] == 4
        assert status["lag"] == {"events": 0, "seconds": 0.0}
        assert status["dead_letters"]["count"] == 0


async def test_a_restart_resumes_from_the_target_checkpoint(
    config: Config, store: MemoryStore
) -> None:
    async with running(config, store) as manager:
        for i in range(5):
            await emit(store, "Added", f"c{i}", by=1, group="g")
        await settled(manager)
    for i in range(5, 8):
        await emit(store, "Added", f"c{i}", by=1, group="g")
    async with running(config, store, owner="me-again") as manager:
        await settled(manager)
        assert await rows(manager, "groups") == [{"key": "g", "total": 8, "count": 8}]


async def test_a_poison_event_is_dead_lettered_and_replayed_after_a_fix(
    write_config: Callable[[str], Config], store: MemoryStore
) -> None:
    config = write_config(BASE + PROJECTIONS)
    READ_MODELS.of(config)["counters"].retries = 1
    async with running(config, store) as manager:
        await emit(store, "Added", "a", by=1, group="g")
        bad = await emit(store, "Added", "b", by="7", group="g")  # a string, not an integer
        await emit(store, "Added", "c", by=3, group="g")
        await settled(manager)
        await settled(manager)  # past the dead letters each projection appended
        assert [r["key"] for r in await rows(manager, "counters")] == ["a", "c"]
        status = await manager.status("counters", detail=True)
        assert status["status"] == "running" and status["checkpoint"] == status["head"]
        (letter,) = status["dead_letters"]["items"]
        assert letter["position"] == bad and letter["attempts"] == 2
        assert "expected an integer, got '7'" in letter["reason"]
        # poison for `groups` too (row.total + '7'), in its own dead-letter stream
        assert (await manager.status("groups", detail=True))["dead_letters"]["count"] == 1
        result = await manager.replay("counters")  # not fixed yet: stays open
        assert result["replayed"] == [] and len(result["failed"]) == 1
    fixed = write_config(
        BASE + PROJECTIONS.replace("upsert: {total: data.by,", "upsert: {total: int(data.by),"),
        "fixed.yaml",
    )
    async with running(fixed, store) as manager:
        await settled(manager)
        result = await manager.replay("counters")
        assert [r["position"] for r in result["replayed"]] == [bad] and result["failed"] == []
        assert (await manager.get("counters", "b"))["total"] == 7
        assert (await manager.status("counters", detail=True))["dead_letters"]["count"] == 0
        assert (await manager.replay("counters"))["replayed"] == []  # closed: not again
        # a rebuild applies it in order now, and records no new dead letter
        await manager.rebuild("counters")
        await settled(manager)
        assert [r["key"] for r in await rows(manager, "counters")] == ["a", "b", "c"]
        assert (await manager.status("counters", detail=True))["dead_letters"]["count"] == 0


async def test_on_error_stop_fails_the_projection_until_started(
    write_config: Callable[[str], Config], store: MemoryStore
) -> None:
    config = write_config(BASE + PROJECTIONS.replace("  groups:", "  groups:\n    on_error: stop"))
    READ_MODELS.of(config)["groups"].retries = 0
    async with running(config, store) as manager:
        await emit(store, "Added", "a", by=1, group="g")
        bad = await emit(store, "Added", "b", by="5", group="g")
        await emit(store, "Added", "c", by=2, group="g")
        runner = manager.runner("groups")
        async with asyncio.timeout(10):
            while runner.state != "failed":
                runner.changed.clear()
                runner.notify()
                await runner.changed.wait()
        status = await manager.status("groups", detail=True)
        assert status["status"] == "failed" and status["checkpoint"] == bad - 1
        assert f"at position {bad}" in status["last_error"]
        assert status["dead_letters"]["count"] == 0  # stopped before it, not past it
        assert await rows(manager, "groups") == [{"key": "g", "total": 1, "count": 1}]
        await settled_one(manager, "counters")  # the other projection goes on
    async with running(config, store) as manager:  # a restart keeps it failed
        assert (await manager.status("groups"))["status"] == "failed"
    fixed = write_config(
        BASE
        + PROJECTIONS.replace("  groups:", "  groups:\n    on_error: stop").replace(
            "row.total + data.by", "row.total + int(data.by)"
        ),
        "fixed.yaml",
    )
    async with running(fixed, store) as manager:
        await manager.set_running("groups", True)
        await settled(manager)
        assert await rows(manager, "groups") == [{"key": "g", "total": 8, "count": 3}]
        assert (await manager.status("groups"))["last_error"] is None


async def settled_one(manager: ProjectionManager, name: str) -> None:
    from tests.projections.helpers import caught_up

    await caught_up(manager.runner(name), manager.store)


async def test_stop_and_start(config: Config, store: MemoryStore) -> None:
    async with running(config, store) as manager:
        await emit(store, "Added", "a", by=1, group="g")
        await settled(manager)
        await manager.set_running("counters", False)
        assert (await manager.status("counters"))["status"] == "stopped"
        await emit(store, "Added", "b", by=1, group="g")
        await settled_one(manager, "groups")
        status = await manager.status("counters")
        assert status["status"] == "stopped" and status["lag"]["events"] == 1
        assert [r["key"] for r in await rows(manager, "counters")] == ["a"]
    async with running(config, store) as manager:  # stopped survives a restart
        assert (await manager.status("counters"))["status"] == "stopped"
        await manager.set_running("counters", True)
        await settled(manager)
        assert [r["key"] for r in await rows(manager, "counters")] == ["a", "b"]


async def test_a_rebuild_swaps_in_a_new_read_model(config: Config, store: MemoryStore) -> None:
    for i in range(30):
        await emit(store, "Added", f"c{i % 7}", by=i, group=f"g{i % 3}")
    async with running(config, store) as manager:
        await settled(manager)
        before = {name: await rows(manager, name) for name in ("counters", "groups")}
    async with running(config, store, run=False) as manager:
        await manager.runner("groups").open()
        assert await manager.rebuild("groups") is True
        assert await manager.rebuild("groups") is False  # already under way
        status = await manager.status("groups")
        assert status["status"] == "rebuilding" and status["rebuild"]["position"] == 0
        assert await rows(manager, "groups") == before["groups"]  # queries: the old model
    async with running(config, store) as manager:
        await settled(manager)
        assert await rows(manager, "groups") == before["groups"]
        status = await manager.status("groups")
        assert status["status"] == "running" and status["checkpoint"] == 30


async def test_only_the_lease_holder_applies_and_a_successor_takes_over(
    config: Config, store: MemoryStore
) -> None:
    first = ProjectionManager(config, store, settings=FAST, owner="one")
    second = ProjectionManager(config, store, settings=FAST, owner="two")
    await first.start()
    await emit(store, "Added", "a", by=1, group="g")
    await settled(first)
    await second.start()
    try:
        for i in range(20):
            await emit(store, "Added", f"c{i}", by=1, group="g")
        await settled(first)
        status = await second.status("groups")
        assert not status["active_here"] and status["owner"] == "one"
        assert status["checkpoint"] == 21  # read from the target: the holder's progress
        first.abort()  # kill -9: the lease is not released
        for i in range(10):
            await emit(store, "Added", f"d{i}", by=1, group="g")
        await settled(second)  # within the lease's ttl
        assert (await second.status("groups"))["owner"] == "two"
        assert await rows(second, "groups") == [{"key": "g", "total": 31, "count": 31}]
    finally:
        await second.stop()
        await first.targets.close()


async def test_a_disabled_projection_is_listed_but_not_run(
    write_config: Callable[[str], Config], store: MemoryStore
) -> None:
    config = write_config(BASE + PROJECTIONS.replace("  groups:", "  groups:\n    enabled: false"))
    async with running(config, store) as manager:
        assert set(manager.runners) == {"counters"}
        status = await manager.status("groups")
        assert status["status"] == "stopped" and status["enabled"] is False
        with pytest.raises(NotFound):
            await manager.status("nope")


async def test_a_read_model_ahead_of_an_emptied_store_fails_until_rebuilt(
    config: Config, store: MemoryStore
) -> None:
    for i in range(6):
        await emit(store, "Added", f"c{i}", by=1, group="g")
    async with running(config, store) as manager:
        await settled(manager)
    emptied = MemoryStore()  # the event store started afresh; the read model kept
    await emptied.open()
    try:
        await emit(emptied, "Added", "new", by=5, group="h")
        async with running(config, emptied) as manager:

            async def failed() -> str | None:
                status = await manager.status("groups")
                return status["last_error"] if status["status"] == "failed" else None

            why = await eventually_async(failed, 10, "the projection to fail")
            assert "position 6" in why and "ends at 1" in why and "rebuild" in why, why
            assert await rows(manager, "groups") == [{"key": "g", "total": 6, "count": 6}]
            await manager.set_running("groups", True)  # resumed, not rebuilt: fails again
            assert await eventually_async(failed, 10, "the projection to fail again")
            assert await manager.rebuild("groups") is True
            await settled(manager)
            assert await rows(manager, "groups") == [{"key": "h", "total": 5, "count": 1}]
            status = await manager.status("groups")
            assert status["status"] == "running" and status["checkpoint"] == 1
    finally:
        await emptied.close()
