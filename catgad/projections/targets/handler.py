"""Handler targets (webhook, plugin): user code told each event, at least once.

What user code does with an event cannot join a catgad transaction, so these
targets are delivered to at least once and deduplicate by the event id they
are given (the webhook's `webhook-id`, the plugin's `event["id"]`). The
checkpoint is the store's (Coordination, `projection:<name>`), saved after
each batch; after a crash the unsaved part of the batch is delivered again.
A rebuild delivers every event again from the start. Without a store that
coordinates (memory), the checkpoint lives in this process only.

A delivery ends in one of three ways: done; HandlerUnavailable (down, 5xx,
timeout: the runner waits and tries the same event again, never skipping
it); anything else (a 4xx, a plugin that raised): poison, dead-lettered.
"""

from __future__ import annotations

from typing import Protocol

from catgad.envelope import Envelope
from catgad.projections.targets.protocol import Meta, State
from catgad.store.protocol import Coordination, EventStore


class Delivery(Protocol):
    """How one handler kind is told an event."""

    kind: str

    async def open(self) -> None: ...

    async def deliver(self, projection: str, event: Envelope) -> None: ...

    async def close(self) -> None: ...


def checkpoint_name(projection: str) -> str:
    return f"projection:{projection}"


class HandlerTarget:
    """A projection whose events go to a handler; its checkpoint is kept by the store."""

    shadow = False

    def __init__(self, name: str, delivery: Delivery, store: EventStore) -> None:
        self.name = name
        self.kind = delivery.kind
        self.delivery = delivery
        self._coordination = store if isinstance(store, Coordination) else None
        self._position = 0  # without coordination: this process's memory
        self._state: State = "running"
        self._error: str | None = None

    async def open(self) -> None:
        await self.delivery.open()

    async def close(self) -> None:
        await self.delivery.close()

    async def meta(self) -> Meta:
        position = self._position
        if self._coordination is not None:
            position = await self._coordination.load_checkpoint(checkpoint_name(self.name))
        return Meta(position, self._state, self._error)

    async def set_state(self, state: State, error: str | None = None) -> None:
        self._state = state
        self._error = error

    async def deliver(self, event: Envelope) -> None:
        await self.delivery.deliver(self.name, event)

    async def save(self, position: int) -> None:
        self._position = position
        if self._coordination is not None:
            await self._coordination.save_checkpoint(checkpoint_name(self.name), position)

    async def reset(self, position: int = 0) -> None:
        """Deliver again from `position` (a rebuild: from the start)."""
        self._position = position
        if self._coordination is not None:
            await self._coordination.reset_checkpoint(checkpoint_name(self.name), position)
