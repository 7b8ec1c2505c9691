"""Time limits on many awaits at once, on one timer.

Every command is bounded (a backend may hang without error), and almost none
comes near its limit. `asyncio.timeout` arms a timer of its own for each use
and cancels it after: on uvloop a libuv timer, about 4 µs per command, a few
percent of one under wrk. Here a bounded await is an entry in a dict, and one
timer, due at the earliest deadline, looks at them all when it fires.

The outcome is asyncio.timeout's: the task running an await that overruns is
cancelled, and the await raises TimeoutError (CancelledError when the task was
also cancelled from outside).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class _Entry:
    __slots__ = ("deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.expired = False


class Deadlines:
    """Bounds awaits of tasks on one event loop (the first it is used on)."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._keys = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        # uvloop hands back a plain Handle for a time already past: when() is not on it
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        """Awaits bounded now."""
        return len(self._entries)

    async def bounded(self, awaitable: Awaitable[T], limit: float) -> T:
        """`await awaitable`, or TimeoutError once `limit` seconds have passed."""
        task = asyncio.current_task()
        if task is None:  # not in a task: nothing to cancel, so the plain way
            async with asyncio.timeout(limit):
                return await awaitable
        loop = task.get_loop()
        if loop is not self._loop:  # a new loop (tests): the old one's entries are gone
            self._loop, self._timer = loop, None
            self._entries.clear()
        key = next(self._keys)
        entry = self._entries[key] = _Entry(task, loop.time() + limit)
        if self._timer is None or entry.deadline < self._timer_at:
            self._arm(entry.deadline)
        cancelling = task.cancelling()
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if entry.expired and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            del self._entries[key]
        if entry.expired:  # done just as the deadline passed: its cancel is withdrawn
            task.uncancel()
        return result

    def _sweep(self) -> None:
        """Cancel the tasks past their deadline; the timer again for the earliest left."""
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        earliest: float | None = None
        for entry in self._entries.values():
            if entry.expired:
                continue
            if entry.deadline <= now:
                entry.expired = True
                entry.task.cancel()
            elif earliest is None or entry.deadline < earliest:
                earliest = entry.deadline
        if earliest is not None:
            self._arm(earliest)

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._sweep)
        self._timer_at = when
