"""Random schedules of concurrent writers and re-sent commands never lose or duplicate events.

Each command is sent by one to three senders at once (a client retrying before
the first answer arrived), each reading the stream version just before its
append and retrying on ConcurrencyError, with random pauses in between.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catgad.envelope import Envelope
from catgad.errors import ConcurrencyError
from catgad.store.protocol import AppendResult, Capability, EventStore
from tests.contracts.store import event, read_everything, same_result, unplaced
from tests.store.backends import BACKENDS


@dataclass(frozen=True)
class Command:
    stream: int
    events: int  # how many events it appends (0 is allowed)
    senders: int  # how many times it is sent concurrently
    expect: bool  # send the expected version read just before, or None
    same_ids: bool  # re-sends carry the same event ids, or fresh ones


@dataclass(frozen=True)
class Plan:
    streams: int
    commands: list[Command]
    rnd: random.Random


commands = st.builds(
    Command,
    stream=st.integers(0, 2),
    events=st.integers(0, 3),
    senders=st.integers(1, 3),
    expect=st.booleans(),
    same_ids=st.booleans(),
)
plans = st.builds(
    Plan,
    streams=st.integers(1, 3),
    commands=st.lists(commands, min_size=1, max_size=20),
    # one seed drawn up front: how many pauses a run takes depends on I/O timing, and a
    # strategy drawing lazily would then look flaky to Hypothesis
    rnd=st.integers(0, 2**32 - 1).map(random.Random),
)


async def run(make: Callable[[], AbstractAsyncContextManager[EventStore]], plan: Plan) -> None:
    async with make() as store:

        async def pause() -> None:
            for _ in range(plan.rnd.randrange(3)):
                await asyncio.sleep(0)

        async def send(cid: str, c: Command, events: list[Envelope]) -> AppendResult:
            stream = f"S-{c.stream % plan.streams}"
            while True:
                await pause()
                expected = await store.stream_version(stream) if c.expect else None
                await pause()
                try:
                    result = await store.append(
                        stream, events, expected_version=expected, command_id=cid
                    )
                except ConcurrencyError:
                    continue
                if expected is not None and not result.duplicate:
                    # the decision was made at `expected`: it must land right after it
                    assert result.version == expected + len(events), "expectation ignored"
                return result

        sends: list[tuple[str, asyncio.Task[AppendResult]]] = []
        jobs = []
        for n, c in enumerate(plan.commands):
            original = [event(n=n, k=k) for k in range(c.events)]
            for s in range(c.senders):
                copy = (
                    original if c.same_ids or s == 0 else [event(n=n, k=k) for k in range(c.events)]
                )
                jobs.append((f"cmd-{n}", c, copy))
        plan.rnd.shuffle(jobs)
        async with asyncio.TaskGroup() as group:
            for cid, c, evs in jobs:
                sends.append((cid, group.create_task(send(cid, c, evs))))

        by_command: dict[str, list[AppendResult]] = {}
        for cid, task in sends:
            by_command.setdefault(cid, []).append(task.result())
        firsts: dict[str, AppendResult] = {}
        for cid, results in by_command.items():
            originals = [r for r in results if not r.duplicate]
            assert len(originals) == 1, f"{cid}: {len(originals)} appends took effect"
            firsts[cid] = originals[0]
            assert all(same_result(r, originals[0]) for r in results), "a duplicate differs"
            found = await store.find_command(cid)
            assert found is not None and same_result(found, originals[0])

        everything = await read_everything(store)
        ids = [e.id for e in everything]
        assert len(ids) == len(set(ids)), "an event was stored twice"
        assert len(ids) == sum(len(r.events) for r in firsts.values()), "an event was lost"
        positions = [e.position or 0 for e in everything]
        assert positions == sorted(set(positions))
        if store.capabilities & Capability.GAPLESS_GLOBAL_ORDER:
            assert positions == list(range(1, len(positions) + 1))
        for s in range(plan.streams):
            stored = await store.read(f"S-{s}")
            assert [e.streamversion for e in stored] == list(range(1, len(stored) + 1))
        for r in firsts.values():
            stored = await store.read(r.stream, after=r.first_version - 1, limit=len(r.events))
            assert unplaced(stored) == unplaced(r.events), "an acknowledged append is missing"


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@settings(max_examples=30, deadline=None)
@given(plan=plans)
def test_no_lost_update_no_duplicate(backend: str, plan: Plan) -> None:
    asyncio.run(run(BACKENDS[backend], plan))
