"""Dead letters: a message that cannot be decoded or handled is set aside with why; work goes on.

A consumer wraps its handler once and subscribes with the wrapper:

    consumer = consume_with_retries(project, retries=3, backoff=0.1,
                                    store=store, consumer="orders-view")
    await bus.subscribe("events", "orders-view", consumer,
                        on_undecodable=consumer.on_undecodable)

The wrapper skips an event id it handled recently (the bus delivers at least
once; a bounded set of recent ids, per consumer, catches the redeliveries of
a relay restart; durable deduplication, such as a projection's checkpoint
written with its read model, stays the consumer's business). A handler that
raises is called again, `retries` times, with exponential backoff; then, or at
once for `Poison` and for bytes that are not a CloudEvent, the message is
appended to the stream `$deadletter-<consumer>` of the store as an event of
type `catgad.deadletter`:

    data: {consumer, reason, attempts, failed_at,
           envelope: <the original CloudEvent>            (decoded messages)
           raw_base64, raw_text (when valid UTF-8)}       (undecodable bytes)

and the wrapper returns normally, so the bus acknowledges the message and the
consumer goes on. A message dead-lettered twice (a redelivery) is stored once:
the append's command id is derived from the consumer and the message. If the
store cannot take the dead letter either, the wrapper raises and the bus
delivers the message again later: nothing is lost.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from catgad.envelope import Envelope, new_id, now_rfc3339
from catgad.ids import event_id
from catgad.store.protocol import AppendResult, EventStore

log = structlog.get_logger(__name__)

DEADLETTER_TYPE = "catgad.deadletter"
STREAM_PREFIX = "$deadletter-"

Handler = Callable[[Envelope], Awaitable[None]]


def deadletter_stream(consumer: str) -> str:
    return STREAM_PREFIX + consumer


class Poison(Exception):
    """Raised by a handler for a message no retry can help: it is dead-lettered at once."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def dead_letter(
    store: EventStore,
    consumer: str,
    message: Envelope | bytes,
    reason: str,
    attempts: int,
    *,
    source: str = "catgad",
) -> AppendResult:
    """Append `message` to `$deadletter-<consumer>` with the reason; stored once per message."""
    data: dict[str, Any] = {
        "consumer": consumer,
        "reason": reason,
        "attempts": attempts,
        "failed_at": now_rfc3339(),
    }
    if isinstance(message, Envelope):
        data["envelope"] = message.to_dict()
        identity = f"id:{message.id}"
        correlation = message.correlationid or message.id
        causation: str | None = message.id
    else:
        data["raw_base64"] = base64.b64encode(message).decode()
        try:
            data["raw_text"] = message.decode()
        except UnicodeDecodeError:
            pass
        identity = "sha256:" + hashlib.sha256(message).hexdigest()
        correlation, causation = new_id(), None
    command_id = f"deadletter:{consumer}:{identity}"
    stream = deadletter_stream(consumer)
    letter = Envelope(
        type=DEADLETTER_TYPE,
        data=data,
        id=event_id(command_id, 0),  # derived from its command, as the engine does
        source=source,
        subject=stream,
        correlationid=correlation,
        causationid=causation,
    )
    result = await store.append(stream, [letter], expected_version=None, command_id=command_id)
    if not result.duplicate:
        log.error(
            "message dead-lettered",
            consumer=consumer,
            stream=stream,
            reason=reason,
            attempts=attempts,
            message_id=causation,
        )
    return result


class RetryingConsumer:
    """A bus handler around `handler`: deduplicates, retries, dead-letters (module docstring)."""

    def __init__(
        self,
        handler: Handler,
        *,
        store: EventStore,
        consumer: str,
        retries: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 5.0,
        remember: int = 10_000,
        source: str = "catgad",
        dead_letters_too: bool = False,
    ) -> None:
        if retries < 0 or backoff < 0 or remember < 1:
            raise ValueError("retries and backoff must not be negative, remember must be positive")
        self.handler = handler
        self.store = store
        self.consumer = consumer
        self.retries = retries  # attempts = 1 + retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.remember = remember
        self.source = source
        # Dead letters are events too (the relay publishes every stream); a consumer
        # that failed on one would dead-letter the dead letter, and so on for ever.
        self.dead_letters_too = dead_letters_too
        self.handled = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self._recent: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first

    async def __call__(self, envelope: Envelope) -> None:
        if envelope.id in self._recent:
            self.duplicates += 1
            return
        if envelope.type == DEADLETTER_TYPE and not self.dead_letters_too:
            self._seen(envelope.id)
            return
        attempts = 0
        while True:
            attempts += 1
            try:
                await self.handler(envelope)
            except Poison as exc:
                reason = exc.reason
                break
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if attempts > self.retries:
                    break
                log.warning(
                    "handler failed; retrying",
                    consumer=self.consumer,
                    event_id=envelope.id,
                    attempts=attempts,
                    error=reason,
                )
                await asyncio.sleep(self._delay(attempts))
                continue
            self.handled += 1
            self._seen(envelope.id)
            return
        await dead_letter(self.store, self.consumer, envelope, reason, attempts, source=self.source)
        self.dead_lettered += 1
        self._seen(envelope.id)

    async def on_undecodable(self, raw: bytes, reason: str) -> None:
        """For the bus's `on_undecodable`: bytes that are not a CloudEvent never will be."""
        await dead_letter(
            self.store, self.consumer, raw, f"undecodable: {reason}", 1, source=self.source
        )
        self.dead_lettered += 1

    def _delay(self, attempts: int) -> float:
        return float(min(self.backoff * 2 ** min(attempts - 1, 30), self.max_backoff))

    def _seen(self, event_id: str) -> None:
        self._recent[event_id] = None
        if len(self._recent) > self.remember:
            del self._recent[next(iter(self._recent))]


def consume_with_retries(
    handler: Handler,
    retries: int = 3,
    backoff: float = 0.05,
    *,
    store: EventStore,
    consumer: str,
    **options: Any,
) -> RetryingConsumer:
    """`handler` made safe for at-least-once delivery; see RetryingConsumer for `options`."""
    return RetryingConsumer(
        handler, store=store, consumer=consumer, retries=retries, backoff=backoff, **options
    )
