"""The in-process bus: partitioned topic logs and consumer groups inside one process.

It keeps the promises of the brokers so the embedded default behaves like a
distributed deployment: each topic is split into partitions by key (Kafka's
partitioner), each group keeps its own position in each partition, and each
partition of a group is handled by one member at a time (partitions are dealt
round-robin to the members), so a key's messages are handled in order even
when a handler fails and the message is retried.

Several `MemoryBus` objects given one `MemoryHub` share topics and groups like
daemons sharing a broker; a bus's groups resume where they stopped while the
hub lives. Nothing survives the process (the store, the outbox, does).
A partition keeps at most `max_retained` messages: a group that falls further
behind (or joins later) misses the oldest, as with a broker's retention.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from catgad.bus.protocol import Capability, Handler, OnUndecodable, Responder
from catgad.bus.topics import partition_of
from catgad.bus.wire import (
    CORRELATION,
    PendingReplies,
    decode,
    handler_dispatch,
    log_undecodable,
    reply_envelope,
    request_headers,
    responder_dispatch,
)
from catgad.envelope import Envelope
from catgad.errors import Unavailable

log = structlog.get_logger(__name__)

Dispatch = Callable[[Envelope, Mapping[str, str]], Awaitable[None]]
_NO_HEADERS: Mapping[str, str] = {}


@dataclass(slots=True)
class _Entry:
    body: Envelope | bytes  # bytes only for raw messages put in by tests
    headers: Mapping[str, str]


@dataclass(eq=False)
class _Log:
    base: int = 0  # offset of entries[0]
    entries: list[_Entry] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.base + len(self.entries)

    def at(self, offset: int) -> _Entry | None:
        i = offset - self.base
        return self.entries[i] if 0 <= i < len(self.entries) else None

    def trim_to(self, offset: int) -> None:
        drop = min(offset, self.end) - self.base
        if drop > 0:
            del self.entries[:drop]
            self.base += drop


@dataclass(eq=False)
class _Member:
    dispatch: Dispatch
    on_undecodable: OnUndecodable
    busy: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(self, entry: _Entry) -> bool:
        """True when the message is done with (handled, or given to on_undecodable)."""
        body = entry.body
        if isinstance(body, bytes):
            found = decode(body)
            if isinstance(found, str):
                try:
                    await self.on_undecodable(body, found)
                    return True
                except Exception:
                    log.exception("on_undecodable failed; the message is kept", reason=found)
                    return False
            body = found
        try:
            await self.dispatch(body, entry.headers)
            return True
        except Exception:
            log.exception("bus handler failed; redelivering", event_id=body.id, type=body.type)
            return False


class _Group:
    """One consumer group of one topic: a position and a worker per partition."""

    def __init__(self, topic: _Topic, name: str, redelivery_delay: float) -> None:
        self.topic = topic
        self.name = name
        self.redelivery_delay = redelivery_delay
        count = len(topic.logs)
        self.offsets = [topic.logs[p].base for p in range(count)]
        self.members: list[_Member] = []
        self.owners: list[_Member | None] = [None] * count
        self.wakeups = [asyncio.Event() for _ in range(count)]
        self.workers: list[asyncio.Task[None]] = []

    def join(self, member: _Member) -> None:
        self.members.append(member)
        self._deal()
        if not self.workers:
            self.workers = [
                asyncio.create_task(self._work(p), name=f"bus:{self.topic.name}:{self.name}:{p}")
                for p in range(len(self.offsets))
            ]

    async def leave(self, member: _Member) -> None:
        with contextlib.suppress(ValueError):
            self.members.remove(member)
        self._deal()
        while member.busy:  # the message in hand is finished, not abandoned
            member.idle.clear()
            await member.idle.wait()
        if not self.members:
            workers, self.workers = self.workers, []
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _deal(self) -> None:
        for p in range(len(self.owners)):
            self.owners[p] = self.members[p % len(self.members)] if self.members else None
        self.wake()

    def wake(self, partition: int | None = None) -> None:
        for p in range(len(self.wakeups)) if partition is None else (partition,):
            self.wakeups[p].set()

    def caught_up(self) -> bool:
        return all(o >= lg.end for o, lg in zip(self.offsets, self.topic.logs, strict=True))

    async def _work(self, p: int) -> None:
        plog, wakeup = self.topic.logs[p], self.wakeups[p]
        while True:
            self.offsets[p] = max(self.offsets[p], plog.base)  # trimmed past us: skip ahead
            member, entry = self.owners[p], plog.at(self.offsets[p])
            if member is None or entry is None:
                wakeup.clear()
                if self.owners[p] is None or plog.at(self.offsets[p]) is None:
                    await wakeup.wait()
                continue
            member.busy += 1
            try:
                done = await member.deliver(entry)
            finally:
                member.busy -= 1
                if not member.busy:
                    member.idle.set()
            if done:
                self.offsets[p] += 1
                if self.offsets[p] % 256 == 0:
                    self.topic.trim(p)
                self.topic.hub.progressed()
            else:
                # whoever owns the partition next retries this very message first
                await asyncio.sleep(self.redelivery_delay)


class _Topic:
    def __init__(self, hub: MemoryHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.logs = [_Log() for _ in range(hub.partitions)]
        self.groups: dict[str, _Group] = {}

    def append(self, key: str, entry: _Entry) -> None:
        p = partition_of(key, len(self.logs))
        plog = self.logs[p]
        plog.entries.append(entry)
        if len(plog.entries) > self.hub.max_retained:
            self.trim(p)
        for group in self.groups.values():
            group.wake(p)

    def trim(self, p: int) -> None:
        """Let go of what every group has handled, and of anything past the retention."""
        plog = self.logs[p]
        floor = min((g.offsets[p] for g in self.groups.values()), default=plog.base)
        plog.trim_to(max(floor, plog.end - self.hub.max_retained))


class MemoryHub:
    """What buses of one process share, as daemons share a broker."""

    def __init__(self, *, partitions: int = 8, max_retained: int = 100_000) -> None:
        if partitions < 1 or max_retained < 1:
            raise ValueError("partitions and max_retained must be positive")
        self.partitions = partitions
        self.max_retained = max_retained
        self.topics: dict[str, _Topic] = {}
        self.replies = PendingReplies()
        self._progress = asyncio.Event()

    def topic(self, name: str) -> _Topic:
        found = self.topics.get(name)
        if found is None:
            found = self.topics[name] = _Topic(self, name)
        return found

    def progressed(self) -> None:
        self._progress.set()

    async def join(self) -> None:
        """Wait until every group with members has handled every message published so far."""
        while not all(
            g.caught_up() for t in self.topics.values() for g in t.groups.values() if g.members
        ):
            self._progress.clear()
            await self._progress.wait()


@dataclass(eq=False)
class _MemorySubscription:
    group: _Group
    member: _Member
    bus: MemoryBus

    async def stop(self) -> None:
        self.bus._subscriptions.discard(self)
        await self.group.leave(self.member)


class MemoryBus:
    """In-process delivery with the brokers' order and group semantics; see the module docstring."""

    name = "memory"
    capabilities = Capability.SPLITS_GROUP | Capability.REQUEST_REPLY

    def __init__(
        self,
        hub: MemoryHub | None = None,
        *,
        partitions: int = 8,
        max_retained: int = 100_000,
        redelivery_delay: float = 0.5,
    ) -> None:
        self.hub = hub or MemoryHub(partitions=partitions, max_retained=max_retained)
        self.redelivery_delay = redelivery_delay
        self._subscriptions: set[_MemorySubscription] = set()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        await asyncio.gather(*(s.stop() for s in list(self._subscriptions)))

    async def ping(self) -> None:
        return None

    async def publish(self, topic: str, envelope: Envelope, *, key: str) -> None:
        self.hub.topic(topic).append(key, _Entry(envelope, _NO_HEADERS))

    async def publish_raw(self, topic: str, raw: bytes, *, key: str) -> None:
        """Put bytes on a topic as a foreign producer would (tests of undecodable messages)."""
        self.hub.topic(topic).append(key, _Entry(raw, _NO_HEADERS))

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> _MemorySubscription:
        return self._join(topic, group, handler_dispatch(handler), on_undecodable)

    async def serve(
        self,
        topic: str,
        group: str,
        responder: Responder,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> _MemorySubscription:
        async def send_reply(headers: Mapping[str, str], reply: Envelope) -> None:
            # through the codec, so the requester gets its own copy, as from a broker
            self.hub.replies.resolve(headers.get(CORRELATION), reply.to_json())

        dispatch = responder_dispatch(topic, responder, send_reply)
        return self._join(topic, group, dispatch, on_undecodable)

    async def request(
        self,
        topic: str,
        envelope: Envelope,
        *,
        key: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - it travels as the command's deadline
    ) -> Envelope:
        correlation, future = self.hub.replies.expect()
        headers = request_headers("memory", correlation, timeout)
        try:
            self.hub.topic(topic).append(key, _Entry(envelope, headers))
            async with asyncio.timeout(timeout):
                raw = await future
        except TimeoutError:
            raise Unavailable(
                "bus", f"no reply to {envelope.type} on {topic!r} within {timeout:g}s"
            ) from None
        finally:
            self.hub.replies.forget(correlation)
        return reply_envelope(raw)

    async def join(self) -> None:
        """Wait until every published message has been handled (tests, shutdown)."""
        await self.hub.join()

    def has_group(self, topic: str) -> bool:
        """Whether any consumer group of this hub reads `topic` (or has read it)."""
        found = self.hub.topics.get(topic)
        return found is not None and bool(found.groups)

    def _join(
        self, topic: str, group: str, dispatch: Dispatch, on_undecodable: OnUndecodable | None
    ) -> _MemorySubscription:
        t = self.hub.topic(topic)
        entry = t.groups.get(group)
        if entry is None:
            entry = t.groups[group] = _Group(t, group, self.redelivery_delay)
        member = _Member(dispatch, on_undecodable or log_undecodable)
        entry.join(member)
        sub = _MemorySubscription(entry, member, self)
        self._subscriptions.add(sub)
        return sub
