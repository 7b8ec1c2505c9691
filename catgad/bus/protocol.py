"""The bus seam: publish envelopes to topics, deliver them to consumer groups."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from catgad.envelope import Envelope

Handler = Callable[[Envelope], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None: ...


class Bus(Protocol):
    """At-least-once delivery, in publish order per key.

    Within a consumer group each message goes to one member; different groups
    each get every message. Consumers deduplicate by envelope id.
    """

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, envelope: Envelope, *, key: str) -> None: ...

    async def subscribe(self, topic: str, group: str, handler: Handler) -> Subscription: ...
