"""Property: live processing with random crashes and restarts gives exactly the read model a
rebuild from scratch gives (itself crashed and restarted), on every table target.

A history of events (some poison) is appended in chunks while a projection
runs; its target dies at random writes, before or after the write commits,
as a process killed mid-batch would; each time a new runner takes over from
the checkpoint the target holds. Then the projection is rebuilt, with crashes
too, and the read model compared with the live one and with a pure fold of
the mapping over the events (the oracle).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.projections.mapping import Mapper, MappingError, Op
from catgad.projections.model import ProjectionDef
from catgad.projections.runner import ProjectionRunner
from catgad.projections.section import PROJECTIONS as READ_MODELS
from catgad.projections.targets.protocol import Meta, Page, ProjectionTarget, Row, State
from catgad.store.memory import MemoryStore
from tests.contracts.projection_target import OpenTarget, everything
from tests.projections.backends import STORAGES
from tests.projections.conftest import BASE, PROJECTIONS
from tests.projections.helpers import FAST, emit, head


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the runner catches it)."""


@dataclasses.dataclass
class Schedule:
    """At which writes (1-based, counted across restarts) to die, before or after committing."""

    before: set[int]
    after: set[int]
    writes: int = 0

    def hit(self, when: str) -> bool:
        return self.writes in (self.before if when == "before" else self.after)


class CrashingTarget:
    """A target that dies at the scheduled writes; everything else goes straight through."""

    def __init__(self, inner: ProjectionTarget, schedule: Schedule) -> None:
        self.inner = inner
        self.schedule = schedule
        self.kind = inner.kind
        self.name = inner.name
        self.shadow = inner.shadow

    async def apply(self, ops: Sequence[Op], *, after: int, position: int) -> None:
        self.schedule.writes += 1
        if self.schedule.hit("before"):
            raise Crash
        await self.inner.apply(ops, after=after, position=position)
        if self.schedule.hit("after"):
            raise Crash

    def shadow_target(self) -> ProjectionTarget:
        return CrashingTarget(self.inner.shadow_target(), self.schedule)

    async def swap(self, *, after: int) -> None:
        self.schedule.writes += 1
        if self.schedule.hit("before"):
            raise Crash
        await self.inner.swap(after=after)
        if self.schedule.hit("after"):
            raise Crash

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def meta(self) -> Meta:
        return await self.inner.meta()

    async def set_state(self, state: State, error: str | None = None) -> None:
        await self.inner.set_state(state, error)

    async def rows(self, keys: Collection[str]) -> dict[str, Row | None]:
        return await self.inner.rows(keys)

    async def get(self, key: str) -> Row | None:
        return await self.inner.get(key)

    async def find(
        self, column: str | None, value: Any, *, limit: int, cursor: str | None = None
    ) -> Page:
        return await self.inner.find(column, value, limit=limit, cursor=cursor)

    async def begin_rebuild(self) -> None:
        await self.inner.begin_rebuild()

    async def abort_rebuild(self) -> None:
        await self.inner.abort_rebuild()


def projections() -> dict[str, ProjectionDef]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text(BASE + PROJECTIONS)
        found = READ_MODELS.of(load_config(path, env={}))
    for projection in found.values():
        projection.retries = 0  # poison is poison at once: no backoff sleeps
        projection.batch = 4  # small batches: many writes to die at
    return found


PROJECTION_DEFS = projections()
events = st.lists(
    st.one_of(
        st.tuples(
            st.just("Added"),
            st.sampled_from("abcde"),
            st.one_of(st.integers(-5, 50), st.just("poison")),
            st.sampled_from(["g1", "g2", None]),
        ),
        st.tuples(
            st.just("Renamed"), st.sampled_from("abcde"), st.text("xyz", max_size=3), st.none()
        ),
        st.tuples(st.just("Removed"), st.sampled_from("abcde"), st.none(), st.none()),
    ),
    min_size=1,
    max_size=40,
)
crash_points = st.sets(st.integers(1, 40), max_size=6)


async def append(store: MemoryStore, item: tuple[Any, ...]) -> None:
    kind, cid, value, group = item
    if kind == "Added":
        data: dict[str, Any] = {"by": value}
        if group is not None:
            data["group"] = group
        await emit(store, kind, cid, **data)
    elif kind == "Renamed":
        await emit(store, kind, cid, name=value)
    else:
        await emit(store, kind, cid)


def oracle(projection: ProjectionDef, history: list[Envelope]) -> list[dict[str, Any]]:
    """The read model by a pure fold of the mapping: what every target must hold."""
    mapper = Mapper(projection)
    rows: dict[str, dict[str, Any] | None] = {}
    for event in history:
        overlay = dict(rows)
        try:
            planned = mapper.prepare(event)
            for item in planned:
                overlay.setdefault(item.key, None)
            mapper.evaluate(event, planned, overlay)
        except MappingError:
            continue  # dead-lettered: the read model is as before it
        rows = overlay
    return [{"key": k, **v} for k, v in sorted(rows.items()) if v is not None]


class Runs:
    """Runners of one projection, one after another, as a daemon restarted after each crash."""

    def __init__(self, projection: ProjectionDef, store: MemoryStore, open_target: OpenTarget):
        self.projection = projection
        self.store = store
        self.open_target = open_target
        self.runner: ProjectionRunner | None = None
        self.restarts = 0

    async def fresh(self, schedule: Schedule) -> ProjectionRunner:
        target = CrashingTarget(await self.open_target(self.projection), schedule)
        runner = ProjectionRunner(
            self.projection, self.store, target, owner="daemon", source="tests", settings=FAST
        )
        runner.start()
        self.runner = runner
        return runner

    async def until_caught_up(self, schedule: Schedule) -> None:
        while True:
            runner = self.runner or await self.fresh(schedule)
            assert runner._task is not None
            task = runner._task
            waiting = asyncio.ensure_future(runner.caught_up(await head(self.store)))
            runner.notify()
            done, _ = await asyncio.wait({task, waiting}, timeout=30, return_when="FIRST_COMPLETED")
            assert done, "neither caught up nor crashed within 30s"
            if waiting in done:
                return
            waiting.cancel()
            assert isinstance(task.exception(), Crash), task.exception()
            runner.abort()  # what kill -9 leaves: the lease is not released
            self.runner = None
            self.restarts += 1

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop()


async def scenario(
    kind: str, history: list[tuple[Any, ...]], before: set[int], after: set[int], chunks: int
) -> None:
    store = MemoryStore()
    await store.open()
    try:
        async with STORAGES[kind]() as open_target:
            runs = {name: Runs(p, store, open_target) for name, p in PROJECTION_DEFS.items()}
            schedules = {name: Schedule(set(before), set(after)) for name in runs}
            size = max(1, -(-len(history) // chunks))
            for start in range(0, len(history), size):
                for item in history[start : start + size]:
                    await append(store, item)
                for name, run in runs.items():
                    await run.until_caught_up(schedules[name])
            stored = await store.read_all(limit=10_000)
            for name, run in runs.items():
                projection = PROJECTION_DEFS[name]
                target = await open_target(projection)
                live_rows = await everything(target)
                assert live_rows == oracle(projection, stored), name
                # a rebuild from scratch, dying at writes too, gives the same read model
                assert run.runner is not None
                await run.runner.request_rebuild()
                schedules[name].writes = 0
                await run.until_caught_up(schedules[name])
                assert await everything(target) == live_rows, name
                assert (await target.meta()).rebuild_position is None
                await run.stop()
    finally:
        await store.close()


@pytest.mark.parametrize("kind", sorted(STORAGES))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=events, before=crash_points, after=crash_points, chunks=st.integers(1, 4))
def test_live_with_crashes_equals_a_rebuild(
    kind: str, history: list[tuple[Any, ...]], before: set[int], after: set[int], chunks: int
) -> None:
    asyncio.run(asyncio.wait_for(scenario(kind, history, before, after, chunks), 120))
