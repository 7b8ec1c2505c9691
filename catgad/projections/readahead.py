"""Reading a projection's next batch while the current one is being written.

After a full batch, the batch after it is read and mapped (Consumer.plan:
pure work) in a task, so the store read, the mapping and the target's write
overlap. A batch read early is still exactly the events after its position
(events never change and positions have no gaps), so it is used as it is
when the checkpoint gets there, and thrown away otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from catgad.envelope import Envelope
from catgad.projections.consume import Plan

Batch = tuple[list[Envelope], Plan | None]


class ReadAhead:
    def __init__(self, fetch: Callable[[int, int], Awaitable[Batch]]) -> None:
        self._fetch = fetch
        self._key: tuple[int, int] | None = None
        self._task: asyncio.Task[Batch] | None = None

    async def read(self, after: int, limit: int) -> Batch:
        """The batch after `after`; then, if it was full, the next one is fetched ahead."""
        task, key = self._task, self._key
        self._task = self._key = None
        if task is not None and key == (after, limit):
            events, plan = await task
        else:
            if task is not None:
                task.cancel()
            events, plan = await self._fetch(after, limit)
        if limit > 1 and len(events) == limit:
            following = events[-1].position or 0
            self._key = (following, limit)
            self._task = asyncio.create_task(_run(self._fetch(following, limit)))
        return events, plan

    def drop(self) -> None:
        """Forget the batch read ahead (a failure, a fence, a stop)."""
        task, self._task, self._key = self._task, None, None
        if task is not None:
            task.cancel()


async def _run(fetching: Awaitable[Batch]) -> Batch:
    return await fetching
