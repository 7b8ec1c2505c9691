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
  rather than cancelling the client mid-request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

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

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bus.url,
            client_id="catgad-bus",
            group_id=kafka_group(self.bus.prefix, self.group),
            enable_auto_commit=False,  # committed only after the handler returned
            auto_offset_reset="earliest",  # a new group reads the topic from its start
            max_poll_records=self.bus.max_poll_records,
            **self.bus.consumer_options,
        )
        try:
            async with asyncio.timeout(self.bus.timeout):
                await consumer.start()
            consumer.subscribe([self.name], listener=_Rebalance(self))
        except (TimeoutError, OSError, KafkaError) as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise Unavailable("kafka bus", f"cannot join group {self.group!r}: {exc!r}") from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name=f"bus:{self.name}:{self.group}")

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

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping:
            generation = self.generation
            try:
                batches = await consumer.getmany(
                    timeout_ms=int(_POLL * 1000), max_records=self.bus.max_poll_records
                )
            except KafkaError as exc:
                log.warning("kafka bus poll failed; retrying", topic=self.name, error=repr(exc))
                await asyncio.sleep(_POLL)  # the client reconnects by itself; nothing to await
                continue
            async with self.lock:
                if generation != self.generation:
                    self._unread(consumer, batches)
                    continue
                for tp, records in batches.items():
                    if self._stopping:
                        break
                    await self._partition(consumer, tp, records)

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
                await consumer.commit({tp: done})
            except KafkaError as exc:
                # the partition moved on: its new owner starts at the last commit (at least once)
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
