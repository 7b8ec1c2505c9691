"""The in-process bus: per-group queues inside one daemon, for the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from catgad.bus.protocol import Handler
from catgad.envelope import Envelope

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class _Group:
    topic: str
    name: str
    handlers: list[Handler] = field(default_factory=list)
    queue: asyncio.Queue[Envelope] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    async def drain(self) -> None:
        turn = 0
        while True:
            envelope = await self.queue.get()
            try:
                if self.handlers:
                    # one member per message, round robin, as a consumer group does
                    handler = self.handlers[turn % len(self.handlers)]
                    turn += 1
                    await handler(envelope)
            except Exception:
                log.exception(
                    "memory bus handler failed",
                    topic=self.topic,
                    group=self.name,
                    event_id=envelope.id,
                )
            finally:
                self.queue.task_done()


@dataclass(eq=False)
class _MemorySubscription:
    group: _Group
    handler: Handler

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.group.handlers.remove(self.handler)


class MemoryBus:
    """Delivers in publish order per group; nothing survives the process (the store does)."""

    name = "memory"

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, _Group]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        for groups in self._groups.values():
            for group in groups.values():
                if group.task is not None:
                    group.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await group.task
        self._groups.clear()

    async def publish(self, topic: str, envelope: Envelope, *, key: str) -> None:
        for group in self._groups.get(topic, {}).values():
            group.queue.put_nowait(envelope)

    async def subscribe(self, topic: str, group: str, handler: Handler) -> _MemorySubscription:
        groups = self._groups.setdefault(topic, {})
        entry = groups.get(group)
        if entry is None:
            entry = groups[group] = _Group(topic, group)
            entry.task = asyncio.create_task(entry.drain(), name=f"bus:{topic}:{group}")
        entry.handlers.append(handler)
        return _MemorySubscription(entry, handler)

    async def join(self) -> None:
        """Wait until every published message has been handled (tests, shutdown)."""
        for groups in self._groups.values():
            for group in groups.values():
                await group.queue.join()
