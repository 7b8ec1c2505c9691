"""The bus seam: publish envelopes to topics, deliver them to consumer groups, route commands.

Every backend (memory, nats, kafka) promises the same things, and
`tests/contracts/bus.py` is what those words mean:

- `publish` returns once the broker has the message (JetStream PubAck, Kafka
  acks=all); a broker that cannot be reached raises `Unavailable` within the
  bus's timeout, never hangs.
- Delivery is at least once, to every consumer group of a topic; within a
  group each message goes to one member. Messages with the same key reach the
  group in publish order, also when a handler fails: a handler that raises
  gets the same message again (after `redelivery_delay`), and nothing with the
  same key is handled before it succeeds. Consumers deduplicate by envelope id.
- A message that is not a CloudEvent goes to the subscription's
  `on_undecodable(raw, reason)` and is then acknowledged; it is never dropped
  silently nor redelivered forever.
- `request` sends a command to the one member of the serving group that holds
  the key's partition at that moment, so each key's commands are handled one
  at a time, in order, by one replica; a missing reply raises `Unavailable`,
  at once when the connection to the broker is lost while waiting (the reply
  could not come through it), else at the timeout.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from catgad.envelope import Envelope

Handler = Callable[[Envelope], Awaitable[None]]
"""Handles one delivered envelope; raising means "not done": it is delivered again."""

Responder = Callable[[Envelope], Awaitable[Envelope]]
"""Handles one command and returns the reply; raising means "try again" (until the deadline)."""

OnUndecodable = Callable[[bytes, str], Awaitable[None]]
"""Takes a message the bus could not decode (its raw bytes and why); raising keeps it for later."""


class Capability(enum.Flag):
    """What a bus can do beyond the common promises; tests that need one say so."""

    NONE = 0
    DURABLE = enum.auto()
    """Messages and group positions outlive the process (a broker keeps them)."""
    SPLITS_GROUP = enum.auto()
    """Members of one group share a topic's messages, each key staying with one member at a time."""
    REQUEST_REPLY = enum.auto()
    """`request` and `serve` route commands by key."""


@runtime_checkable
class Subscription(Protocol):
    async def stop(self) -> None:
        """Finish the message in hand, leave the group, hand back what was not handled."""


@runtime_checkable
class Bus(Protocol):
    """At-least-once delivery, in publish order per key; see the module docstring."""

    name: str
    capabilities: Capability

    async def open(self) -> None: ...

    async def close(self) -> None:
        """Stop every subscription of this bus, then disconnect."""

    async def ping(self) -> None:
        """Return if the broker answers, else raise `Unavailable` (readiness probes)."""

    async def publish(self, topic: str, envelope: Envelope, *, key: str) -> None: ...

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> Subscription: ...

    async def request(
        self,
        topic: str,
        envelope: Envelope,
        *,
        key: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - it travels as the command's deadline
    ) -> Envelope:
        """Send a command to the group serving `topic` and return its reply."""
        ...

    async def serve(
        self,
        topic: str,
        group: str,
        responder: Responder,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> Subscription:
        """Answer the commands sent to `topic`, sharing them with the group's other members."""
        ...
