"""One member of a Kafka consumer group: batches handled in order, committed, rewound on failure.

Why each step is as it is (the ordering argument is in `catgad.bus.kafka`):
- a batch is handled under a lock that the rebalance listener also takes, so
  a partition is given up only after the records in hand were handled and
  their offsets committed; a batch fetched before a rebalance is dropped
  unhandled (its records come again from the committed offset, to whoever
  owns their partition now);
- a failing handler: commit what went before, seek back to the failed
  record and pause its partition for `redelivery_delay`;
- polls last at most `_POLL` seconds, so stop() waits for the poll in hand
  rather than cancelling the client mid-request;
- a commit is bounded by the bus's timeout: aiokafka retries some errors for
  ever (UnknownTopicOrPartition, once a restarted broker lost the topic), and
  a commit that never ends holds the lock the rebalance listener waits for,
  so the member could never re-join;
- a topic that was there and is missing from the consumer's metadata (a
  broker back without it) is created again by the subscription itself, at
  most once per `_TOPIC_CHECK`, so a consumer-only daemon recovers even when
  nobody publishes to it;
- when this bus made the topic again and, a session timeout later, the
  member still holds none of its partitions, the member is replaced by a
  fresh one (a new consumer joining the group): Tansu answers a rejoin whose
  members did not change with the member's old assignment, which was empty
  while the topic was missing, so the rejoin that the metadata change sets
  off would leave the partitions unread. Not at once: a member that re-joined
  after the topic came back has its partitions, and replacing it would cost
  a rebalance.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiokafka.client
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import InvalidSessionTimeoutError, KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from catgad.bus.protocol import OnUndecodable
from catgad.bus.topics import kafka_group
from catgad.bus.wire import decode
from catgad.envelope import Envelope
from catgad.errors import Unavailable

if TYPE_CHECKING:
    from catgad.bus.kafka import KafkaBus

log = structlog.get_logger(__name__)

Dispatch = Callable[[Envelope, Mapping[str, str]], Awaitable[None]]
_POLL = 0.25  # seconds; how long stop() may wait for a poll to end
_TOPIC_CHECK = 1.0  # seconds between two attempts to make a missing topic again
_REFUSED_RETRY = 5.0  # seconds between two joins the broker refused for the session timeout


# -- metadata requests that leave missing topics missing ----------------------------------
# aiokafka builds every metadata request with the broker's auto-creation on and offers
# no setting for it. The request class its client module uses is replaced by one that
# turns it off while `_leave_missing` is set, which only the bus's own clients set (see
# no_auto_create): every other aiokafka client in the process behaves as before.

_leave_missing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "catgad_kafka_leave_missing", default=False
)


class _MetadataRequest(MetadataRequest):  # type: ignore[misc]
    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None
    ) -> None:
        if allow_auto_topic_creation is None and _leave_missing.get():
            allow_auto_topic_creation = False
        super().__init__(topics, allow_auto_topic_creation)


aiokafka.client.MetadataRequest = _MetadataRequest


def no_auto_create(client: Any) -> None:
    """Make `client` (an aiokafka AIOKafkaClient) ask for metadata without auto-creation."""
    update: Callable[..., Awaitable[Any]] = client._metadata_update

    async def leaving_missing(*args: Any, **kwargs: Any) -> Any:
        token = _leave_missing.set(True)
        try:
            return await update(*args, **kwargs)
        finally:
            _leave_missing.reset(token)

    client._metadata_update = leaving_missing


def session_refused(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is the broker refusing the group's session timeout;
    aiokafka reports it as a coordination error caused by InvalidSessionTimeoutError."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, InvalidSessionTimeoutError) or "InvalidSessionTimeout" in str(seen):
            return True
        seen = seen.__cause__
    return False


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sub: KafkaSubscription) -> None:
        self.sub = sub

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            self.sub.generation += 1  # a batch fetched before now is stale
        async with self.sub.lock:  # the batch in hand is finished and committed first
            pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class KafkaSubscription:
    """A member of `group` on the Kafka topic `name`."""

    def __init__(
        self,
        bus: KafkaBus,
        name: str,
        group: str,
        dispatch: Dispatch,
        on_undecodable: OnUndecodable,
    ) -> None:
        self.bus = bus
        self.name = name
        self.group = group
        self._dispatch = dispatch
        self._on_undecodable = on_undecodable
        self.lock = asyncio.Lock()
        self.generation = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._resumes: dict[TopicPartition, asyncio.TimerHandle] = {}
        self.on_stop: Callable[[KafkaSubscription], None] | None = None
        self._topic_checked = 0.0  # monotonic time of the last attempt to make the topic
        self._topic_seen = False  # the consumer's metadata has had the topic
        self._topic_missing = False  # ... and has lost it since (logged once)
        self._renew_at: float | None = None  # when to see if the member must be replaced

    async def start(self) -> None:
        self._consumer = await self._join()
        self._task = asyncio.create_task(self._run(), name=f"bus:{self.name}:{self.group}")

    async def _join(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bus.url,
            client_id="catgad-bus",
            group_id=kafka_group(self.bus.prefix, self.group),
            enable_auto_commit=False,  # committed only after the handler returned
            auto_offset_reset="earliest",  # a new group reads the topic from its start
            max_poll_records=self.bus.max_poll_records,
            **self.bus.consumer_options,
        )
        no_auto_create(consumer._client)
        try:
            async with asyncio.timeout(self.bus.timeout):
                await consumer.start()
            consumer.subscribe([self.name], listener=_Rebalance(self))
        except (TimeoutError, OSError, KafkaError) as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise Unavailable("kafka bus", f"cannot join group {self.group!r}: {exc!r}") from exc
        return consumer

    def topic_made(self) -> None:
        """The bus made this subscription's topic again: look a session timeout from now."""
        session = self.bus.consumer_options["session_timeout_ms"] / 1000
        self._renew_at = time.monotonic() + session

    def _must_renew(self, consumer: AIOKafkaConsumer) -> bool:
        if self._renew_at is None or time.monotonic() < self._renew_at:
            return False
        self._renew_at = None
        return not consumer.assignment()

    async def _renewed(self) -> AIOKafkaConsumer | None:
        """The old member leaves (its batch in hand finished), a new one joins; None while
        the broker refuses the join (the next poll tries again)."""
        async with self.lock:
            old, self._consumer = self._consumer, None
            if old is not None:
                for handle in self._resumes.values():
                    handle.cancel()
                self._resumes.clear()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.bus.timeout):
                        await old.stop()
            try:
                self._consumer = await self._join()
            except Unavailable as exc:
                log.warning("kafka bus cannot re-join; retrying", topic=self.name, error=str(exc))
                return None
            log.info("kafka bus member renewed", topic=self.name, group=self.group)
            return self._consumer

    async def _make_topic_if_missing(self, consumer: AIOKafkaConsumer) -> None:
        if consumer.partitions_for_topic(self.name) is not None:
            self._topic_seen = True
            self._topic_missing = False
            return
        if not self._topic_seen:  # just joined: the metadata has not come yet
            return
        now = time.monotonic()
        if now - self._topic_checked < _TOPIC_CHECK:
            return
        self._topic_checked = now
        if not self._topic_missing:  # once per absence, not once a second
            self._topic_missing = True
            log.warning("kafka topic missing from the metadata; making it", topic=self.name)
        with contextlib.suppress(Unavailable):  # the broker is still away: try again later
            await self.bus.ensure_topic("", name=self.name, fresh=True)

    async def stop(self) -> None:
        """Finish the record in hand, commit, leave the group; twice is harmless."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # a handler stuck past stop_timeout is cancelled; its record stays uncommitted
            _, late = await asyncio.wait({task}, timeout=self.bus.stop_timeout)
            for t in late:
                t.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for handle in self._resumes.values():
            handle.cancel()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.bus.timeout):
                    await consumer.stop()  # leaves the group: the others take its partitions
        if self.on_stop is not None:
            self.on_stop(self)

    async def _run(self) -> None:
        while not self._stopping:
            consumer = self._consumer
            if consumer is None or self._must_renew(consumer):
                if await self._renewed() is None:
                    await asyncio.sleep(_TOPIC_CHECK)  # a broker refusing joins: nothing to await
                continue
            generation = self.generation
            try:
                batches = await consumer.getmany(
                    timeout_ms=int(_POLL * 1000), max_records=self.bus.max_poll_records
                )
            except KafkaError as exc:
                if session_refused(exc):
                    await self._refused(exc)
                    continue
                log.warning("kafka bus poll failed; retrying", topic=self.name, error=repr(exc))
                await asyncio.sleep(_POLL)  # the client reconnects by itself; nothing to await
                continue
            if not batches:
                await self._make_topic_if_missing(consumer)
            async with self.lock:
                if generation != self.generation:
                    self._unread(consumer, batches)
                    continue
                for tp, records in batches.items():
                    if self._stopping:
                        break
                    await self._partition(consumer, tp, records)

    async def _refused(self, exc: KafkaError) -> None:
        """The broker refuses the group's session timeout (Apache Kafka's floor is its
        group.min.session.timeout.ms, 6 s by default): say what to change, and join again
        later with a fresh member (the client's coordinator has given up for good)."""
        session = self.bus.consumer_options["session_timeout_ms"] / 1000
        log.error(
            "kafka broker refuses the consumer group's session timeout; this daemon takes no"
            " part in the group until it accepts one",
            topic=self.name,
            group=self.group,
            session_timeout=session,
            fix=f"set the brokers' group.min.session.timeout.ms to at most {session * 1000:g},"
            " or raise bus.options.session_timeout (a dead daemon's partitions then move later)",
            error=repr(exc),
        )
        waited = 0.0
        while waited < _REFUSED_RETRY and not self._stopping:
            await asyncio.sleep(_POLL)  # an operator's change is awaited; no event announces it
            waited += _POLL
        self._renew_at = time.monotonic()  # holds no partition: the next turn replaces it

    def _unread(self, consumer: AIOKafkaConsumer, batches: Mapping[TopicPartition, Any]) -> None:
        """Partitions moved since this batch was fetched: those still ours are read again."""
        assigned = consumer.assignment()
        for tp, records in batches.items():
            if records and tp in assigned:
                consumer.seek(tp, records[0].offset)

    async def _partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Any
    ) -> None:
        done = None
        for record in records:
            if self._stopping:
                break
            if not await self._handle(record):
                consumer.seek(tp, record.offset)
                consumer.pause(tp)
                self._resumes[tp] = asyncio.get_running_loop().call_later(
                    self.bus.redelivery_delay, self._resume, consumer, tp
                )
                break
            done = record.offset + 1
        if done is not None:
            try:
                async with asyncio.timeout(self.bus.timeout):
                    await consumer.commit({tp: done})
            except (TimeoutError, KafkaError) as exc:
                # the partition moved on, or the broker lost it: whoever reads it next starts
                # at the last commit that made it (at least once)
                log.warning("kafka bus commit failed", topic=self.name, error=repr(exc))

    def _resume(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self._resumes.pop(tp, None)
        with contextlib.suppress(Exception):  # not ours any more: nothing to resume
            consumer.resume(tp)

    async def _handle(self, record: Any) -> bool:
        """True when the record is done with (handled, or given to on_undecodable)."""
        raw: bytes = record.value or b""
        found = decode(raw)
        if isinstance(found, str):
            try:
                await self._on_undecodable(raw, found)
                return True
            except Exception:
                log.exception("on_undecodable failed; the record is kept", reason=found)
                return False
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        try:
            await self._dispatch(found, headers)
            return True
        except Exception:
            log.exception(
                "bus handler failed; redelivering",
                topic=self.name,
                group=self.group,
                event_id=found.id,
                type=found.type,
            )
            return False
