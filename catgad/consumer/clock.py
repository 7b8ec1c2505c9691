"""Time as reactors see it: wall-clock now, and waiting until a moment or a wake-up.

Reactors compare stored times (a saga's start, a step's deadline) with `now()`,
so after a restart a deadline that passed meanwhile is acted on at once. Tests
use ManualClock and move time with `advance()` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from datetime import datetime
from typing import Any, Protocol

from catgad.envelope import rfc3339_micros


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    async def wait(self, wake: asyncio.Event, until: float | None) -> None:
        """Return when `wake` is set, or `until` (epoch seconds) has come, whichever is first."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> float:
        return time.time()

    async def wait(self, wake: asyncio.Event, until: float | None) -> None:
        if until is None:
            await wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(until - time.time(), 0.0)):
                await wake.wait()


class ManualClock:
    """A clock that moves only when told: `advance(seconds)` wakes whoever is due."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, due = heapq.heappop(self._sleepers)
            if not due.done():
                due.set_result(None)

    async def wait(self, wake: asyncio.Event, until: float | None) -> None:
        if until is not None and until <= self._now:
            return
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(wake.wait())]
        if until is not None:
            due: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._sleepers, (until, next(self._order), due))
            waiters.append(due)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


def rfc3339(moment: float) -> str:
    """Epoch seconds as the envelope's time format (rounded to the microsecond as datetime
    rounds them)."""
    fraction, whole = math.modf(moment)
    return rfc3339_micros(int(whole) * 1_000_000 + round(fraction * 1_000_000))


def parse_rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
