"""Waiting for a condition with a deadline, instead of sleeping a guessed time.

    value = eventually(lambda: daemon.logs().count("ready"), 10, "the daemon's ready line")
    await eventually_async(store.ping, 20, "the store to reconnect", retry_on=(Unavailable,))

A condition is met when it returns something truthy (that value is returned);
`retry_on` exceptions count as "not yet". When the deadline passes, an
AssertionError says what was awaited, for how long, and what was last seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
INTERVAL = 0.05  # seconds between checks


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g}s waiting for {what} (last seen: {last!r})")


def eventually(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = INTERVAL,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `condition` until it returns something truthy, which is returned; fail at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: Any = condition()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, last)
        time.sleep(interval)


async def eventually_async(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float,  # noqa: ASYNC109 - a test's patience, not a call's timeout
    what: str,
    *,
    interval: float = INTERVAL,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """As `eventually`, for a condition that may be a coroutine function; the loop keeps running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: Any = condition()
            if inspect.isawaitable(last):
                last = await last
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, last)
        await asyncio.sleep(interval)
