"""`LoopSettings.linger`: a loop woken while busy waits that long to gather a larger batch;
a loop woken from idle turns at once, and a loop without linger never waits."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

from catgad.consumer.loop import Loop, LoopSettings


class Turns:
    """A loop owner recording when each turn starts; `busy` turns see an append arrive."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.ended: list[float] = []
        self.busy = 0  # how many of the next turns get a wake-up while they run
        self.loop: Loop | None = None
        self.turned = asyncio.Event()  # set after every turn

    async def turn(self) -> bool:
        self.started.append(time.monotonic())
        assert self.loop is not None
        if self.busy:
            self.busy -= 1
            self.loop.notify()  # an append landing while this batch is handled
        self.ended.append(time.monotonic())
        self.turned.set()
        return False  # then idle: Loop.wait

    async def turn_number(self, count: int) -> None:
        """Return once `count` turns have run (10 s at most)."""
        async with asyncio.timeout(10):
            while len(self.ended) < count:
                self.turned.clear()
                await self.turned.wait()


def looping(settings: LoopSettings) -> tuple[Loop, Turns]:
    turns = Turns()
    turns.loop = Loop("linger-test", turns.turn, settings)
    return turns.loop, turns


async def test_a_wake_up_during_a_turn_waits_the_linger_before_the_next() -> None:
    loop, turns = looping(LoopSettings(poll_interval=30, linger=0.3))
    turns.busy = 1
    loop.start()
    await turns.turn_number(2)  # the first, during which an append came; then, lingering
    assert turns.started[1] - turns.ended[0] >= 0.3
    await loop.stop()


async def test_a_loop_idle_for_longer_than_the_linger_turns_at_once_when_woken() -> None:
    loop, turns = looping(LoopSettings(poll_interval=30, linger=2))
    loop.start()
    await turns.turn_number(1)
    await asyncio.sleep(2.2)  # what is tested: an idle spell longer than the linger
    woken = time.monotonic()
    loop.notify()
    await turns.turn_number(2)
    assert turns.started[1] - woken < 2  # lingering, it would be 2 s or more
    await loop.stop()


async def test_wake_ups_closer_than_the_linger_make_the_loop_linger() -> None:
    loop, turns = looping(LoopSettings(poll_interval=30, linger=0.3))
    loop.start()
    await turns.turn_number(1)
    loop.notify()  # right after the turn: within the linger of its end
    await turns.turn_number(2)
    assert turns.started[1] - turns.ended[0] >= 0.3
    await loop.stop()


async def test_without_linger_a_busy_loop_goes_on_at_once() -> None:
    loop, turns = looping(LoopSettings(poll_interval=30))
    turns.busy = 1
    loop.start()
    await turns.turn_number(2)  # within 10 s, not the 30 s poll: the wake-up counted
    await loop.stop()


async def test_a_wait_cut_short_by_a_wake_up_leaves_no_coroutine_unawaited() -> None:
    loop, _ = looping(LoopSettings(poll_interval=30, linger=0.01))
    loop.notify()

    async def lease_change() -> None:
        await asyncio.sleep(30)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await loop.wait(30, lease_change())
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert not loop.wake.is_set()


async def test_a_linger_ends_once_enough_appends_are_waiting() -> None:
    loop, turns = looping(LoopSettings(poll_interval=30, linger=60, linger_appends=5))
    turns.busy = 1
    loop.start()
    await turns.turn_number(1)  # an append came during it: the loop lingers (a minute)
    for _ in range(4):  # with the one of the turn, five: enough
        loop.notify()
    await turns.turn_number(2)  # within 10 s, not after the minute
