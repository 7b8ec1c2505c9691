"""A cancelled Loop ends: a cancel that lands while `Loop.wait` tidies up its own waits (one
event-loop step after each idle timeout) is not swallowed. Swallowed, the loop ran on, and
asyncio.run's shutdown, which cancels each task once, waited for it forever."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

from catgad.consumer.loop import Loop


async def idle_turn() -> bool:
    return False


def gather_line() -> int:
    """The line of Loop.wait that awaits the gathering of its cancelled waits."""
    lines, first = inspect.getsourcelines(Loop.wait)
    (offset,) = [i for i, line in enumerate(lines) if "await asyncio.gather(" in line]
    return first + offset


async def test_a_cancel_while_the_wait_gathers_its_waits_ends_the_wait() -> None:
    loop = Loop("test", idle_turn)
    waiting = asyncio.create_task(loop.wait(0.01))
    frame = waiting.get_coro().cr_frame  # type: ignore[union-attr]
    line = gather_line()
    # step the event loop until the wait, timed out, is tidying up: awaiting its gather
    deadline = time.monotonic() + 10
    while frame.f_lineno != line:
        assert not waiting.done(), "the wait ended before it was seen tidying up"
        assert time.monotonic() < deadline, "the wait never reached its tidying up"
        await asyncio.sleep(0)  # one step: the tidying up lasts one
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
