"""catgad.engine.deadlines: asyncio.timeout's outcomes, on one timer for many awaits."""

from __future__ import annotations

import asyncio

import pytest

from catgad.engine.deadlines import Deadlines


async def test_an_await_within_its_limit_returns_its_result() -> None:
    deadlines = Deadlines()

    async def quick() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await deadlines.bounded(quick(), 5) == "done"
    assert len(deadlines) == 0


async def test_an_await_past_its_limit_raises_timeout_and_is_cancelled() -> None:
    deadlines = Deadlines()
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadlines.bounded(hang(), 0.05)
    assert cancelled.is_set()
    assert 0.05 <= loop.time() - started < 2
    assert len(deadlines) == 0
    # the task goes on normally afterwards: no cancellation is left pending on it
    await asyncio.sleep(0.01)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_many_awaits_each_end_at_their_own_deadline() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    ended: dict[str, float] = {}

    async def wait(name: str, limit: float, seconds: float) -> str:
        async def work() -> str:
            await asyncio.sleep(seconds)
            return name

        started = loop.time()
        try:
            return await deadlines.bounded(work(), limit)
        except TimeoutError:
            return f"{name} timed out"
        finally:
            ended[name] = loop.time() - started

    results = await asyncio.gather(
        wait("fast", 5, 0.01),  # done long before its limit
        wait("short", 0.05, 10),  # the earliest deadline
        wait("long", 0.3, 10),  # a later one: the timer is armed again for it
        wait("in time", 0.3, 0.1),
    )
    assert results == ["fast", "short timed out", "long timed out", "in time"]
    assert 0.05 <= ended["short"] < ended["long"]
    assert 0.3 <= ended["long"] < 2
    assert len(deadlines) == 0


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    deadlines = Deadlines()
    entered = asyncio.Event()

    async def hang() -> None:
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(deadlines.bounded(hang(), 10))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deadlines) == 0


async def test_nested_limits_the_inner_one_expires_first() -> None:
    deadlines = Deadlines()

    async def inner() -> None:
        await deadlines.bounded(asyncio.Event().wait(), 0.05)

    with pytest.raises(TimeoutError):
        await deadlines.bounded(inner(), 10)
    assert len(deadlines) == 0
