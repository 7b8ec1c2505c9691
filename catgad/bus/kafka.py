"""The Kafka bus: a topic per logical topic, keyed records, a Kafka consumer group per group.

Layout, for prefix `catgad` and topic `orders`:

    topic     catgad.orders           `partitions` partitions, created on first use
    record    key = the key (a stream id): Kafka's partitioner puts a key in one partition
    group     catgad.<group>          offsets committed only after the handler returned
    replies   catgad._replies.<id>    one 1-partition topic per requesting bus, deleted on close

Order and groups are Kafka's own: the group coordinator gives each partition
to one member; a member handles a partition's records in order, commits after
each batch, and on a failing handler seeks back to the failed record (after
`redelivery_delay`), so nothing behind it overtakes it. When members come or
go, a revoked partition is let go only after the batch in hand is finished
and committed (the rebalance listener waits for it), and its new owner starts
at the committed offset.

Commands are records on the command topic, keyed by stream id, served by the
group like any other records (so one member at a time serves each partition,
in order); each carries reply-to, correlation and deadline headers
(`catgad.bus.wire`), and the reply is a record on the requester's reply topic.

A broker that comes back without its topics (Tansu's memory storage after a
restart) must not make them itself at the first metadata request of some
client, with its default partition count: keys would land in other
partitions than before. So the bus's clients ask for metadata without
auto-creation, and after a failure the bus marks the broker down: it fails
calls at once (a quick probe, not a produce that waits out its timeout) and
fails the requests waiting for replies, until the broker answers again; then
it creates each topic again, with `partitions`, before producing to it.
Subscriptions whose topic vanished create it too and re-join their group.

Failover. A member killed without leaving (kill -9, a lost machine) keeps its
partitions until the group coordinator misses its heartbeats for
`session_timeout`; the others learn of the rebalance at their next heartbeat
(`heartbeat_interval`), re-join, and the new owner reads from the committed
offset: commands the dead member had run but not committed run again with
the same id and find their first result. The defaults (2 s, 0.5 s) move a
dead daemon's commands within about 4 s on Tansu, which also holds every join
for about half the session timeout. Apache Kafka refuses a session timeout
below its brokers' `group.min.session.timeout.ms` (6 s by default): lower
that setting, or raise `session_timeout` and accept a slower failover.

`enable_idempotence` turns on the idempotent producer for clusters that have
it; it is off by default because some Kafka-compatible brokers (Tansu) lack
InitProducerId. Nothing depends on it: the store is the outbox and consumers
deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from catgad.bus.kafka_consumer import Dispatch, KafkaSubscription, no_auto_create
from catgad.bus.protocol import Capability, Handler, OnUndecodable, Responder
from catgad.bus.section import KAFKA_HEARTBEAT_INTERVAL, KAFKA_SESSION_TIMEOUT, heartbeat_rule
from catgad.bus.topics import check_prefix, kafka_topic
from catgad.bus.wire import (
    CORRELATION,
    DEADLINE,
    REPLY_TO,
    PendingReplies,
    handler_dispatch,
    log_undecodable,
    reply_envelope,
    request_headers,
    responder_dispatch,
)
from catgad.config.section import config_error
from catgad.envelope import Envelope, new_id
from catgad.errors import Unavailable

log = structlog.get_logger(__name__)

DEFAULT_URL = "127.0.0.1:9092"
DEPENDENCY = "kafka bus"
_TOPIC_EXISTS = 36
_KafkaFailure = (TimeoutError, OSError, KafkaError)
_PROBE = 2.0  # seconds a probe of a broker marked down may take (at most `timeout`)


class KafkaBus:
    """Kafka transport; see the module docstring for the layout and the ordering argument."""

    name = "kafka"
    capabilities = Capability.DURABLE | Capability.SPLITS_GROUP | Capability.REQUEST_REPLY

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        prefix: str = "catgad",
        partitions: int = 8,
        replication_factor: int = 1,
        enable_idempotence: bool = False,
        timeout: float = 10.0,
        redelivery_delay: float = 1.0,
        session_timeout: float = KAFKA_SESSION_TIMEOUT,
        heartbeat_interval: float = KAFKA_HEARTBEAT_INTERVAL,
        rebalance_timeout: float | None = None,
        max_poll_records: int = 500,
        fetch_max_wait: float = 0.1,
        metadata_max_age: float = 30.0,
        stop_timeout: float = 10.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        if partitions < 1 or replication_factor < 1 or max_poll_records < 1:
            raise config_error(None, "bus.options", "partitions, replication, poll size: positive")
        if min(timeout, session_timeout, heartbeat_interval, stop_timeout) <= 0:
            raise config_error(None, "bus.options", "timeouts must be positive")
        if heartbeat_interval >= session_timeout:
            raise config_error(
                None,
                "bus.options.heartbeat_interval",
                heartbeat_rule(heartbeat_interval, session_timeout),
            )
        self.url = url
        self.prefix = check_prefix(prefix)
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.enable_idempotence = enable_idempotence
        self.timeout = timeout
        self.redelivery_delay = redelivery_delay
        self.stop_timeout = stop_timeout
        self.max_poll_records = max_poll_records
        # security (SASL, TLS) and other client settings, passed to every aiokafka client
        self.client_options: dict[str, Any] = dict(client_options or {})
        self.consumer_options: dict[str, Any] = {
            "session_timeout_ms": int(session_timeout * 1000),
            "heartbeat_interval_ms": int(heartbeat_interval * 1000),
            # how long a rebalance waits for members to rejoin (default: session_timeout)
            "rebalance_timeout_ms": int((rebalance_timeout or session_timeout) * 1000),
            "fetch_max_wait_ms": int(fetch_max_wait * 1000),
            "metadata_max_age_ms": int(metadata_max_age * 1000),
            "request_timeout_ms": int(max(timeout, session_timeout + 5) * 1000),
            **self.client_options,
        }
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._topics: set[str] = set()
        self._topic_lock = asyncio.Lock()
        self._subscriptions: set[KafkaSubscription] = set()
        self._replies = PendingReplies()
        self._reply_topic = f"{self.prefix}._replies.{new_id().replace('-', '')[:16]}"
        self._reply_reader: asyncio.Task[None] | None = None
        self._reply_consumer: AIOKafkaConsumer | None = None
        self._reply_lock = asyncio.Lock()
        self._down: str | None = None  # why the broker is thought unreachable, until it answers

    # -- connection --------------------------------------------------------------

    async def open(self) -> None:
        if self._producer is not None:
            return
        ms = int(self.timeout * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.url,
            client_id="catgad-bus",
            acks="all",
            enable_idempotence=self.enable_idempotence,
            request_timeout_ms=ms,
            metadata_max_age_ms=self.consumer_options["metadata_max_age_ms"],
            **self.client_options,
        )
        no_auto_create(producer.client)
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.url, request_timeout_ms=ms, **self.client_options
        )
        try:
            async with asyncio.timeout(self.timeout):
                await producer.start()
                await admin.start()
        except _KafkaFailure as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
            raise Unavailable(DEPENDENCY, f"cannot connect to {self.url}: {exc!r}") from exc
        self._producer, self._admin = producer, admin

    async def close(self) -> None:
        await asyncio.gather(*(s.stop() for s in list(self._subscriptions)))
        self._replies.fail_all(Unavailable(DEPENDENCY, "the bus was closed"))
        reader, self._reply_reader = self._reply_reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        consumer, self._reply_consumer = self._reply_consumer, None
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                if consumer is not None:
                    await consumer.stop()
                    if admin is not None:  # nobody else reads this requester's replies
                        await admin.delete_topics([self._reply_topic])
        for closing in (producer.stop() if producer else None, admin.close() if admin else None):
            if closing is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.timeout):
                        await closing

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.admin().describe_cluster()
        except _KafkaFailure as exc:
            self.mark_down(exc)
            raise Unavailable(DEPENDENCY, f"{self.url} does not answer: {exc!r}") from exc
        self._back()

    def mark_down(self, why: BaseException | str) -> None:
        """The broker failed us: probe it before the next call, and forget which topics exist
        (a broker back from a restart may have lost them). A reply cannot come through a
        broker that is away: its waiting requests fail now rather than at their timeout."""
        text = repr(why) if isinstance(why, BaseException) else why
        if self._down is None:
            log.warning("kafka broker unreachable", url=self.url, error=text)
        self._down = text
        self._topics.clear()
        self._replies.fail_all(Unavailable(DEPENDENCY, f"{self.url} went away: {self._down}"))

    def _back(self) -> None:
        if self._down is not None:
            log.info("kafka broker answers again", url=self.url)
            self._down = None

    async def _check_up(self) -> None:
        """Return at once while the broker is fine; while it is marked down, probe it."""
        if self._down is None:
            return
        try:
            async with asyncio.timeout(min(_PROBE, self.timeout)):
                await self.admin().describe_cluster()
        except _KafkaFailure as exc:
            raise Unavailable(DEPENDENCY, f"{self.url} is unreachable: {exc!r}") from exc
        self._back()

    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise Unavailable(DEPENDENCY, "the bus is not open")
        return self._producer

    def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise Unavailable(DEPENDENCY, "the bus is not open")
        return self._admin

    # -- topics ------------------------------------------------------------------

    async def ensure_topic(
        self, topic: str, *, name: str | None = None, partitions: int = 0, fresh: bool = False
    ) -> str:
        """The Kafka topic of `topic`, created if missing (a restarted Tansu forgets its topics);
        `fresh` asks the broker even if this bus has seen the topic before."""
        name = name or kafka_topic(self.prefix, topic)
        if fresh:
            await self._check_up()
            self._topics.discard(name)
        if name in self._topics:
            return name
        async with self._topic_lock:
            if name in self._topics:
                return name
            new = NewTopic(name, partitions or self.partitions, self.replication_factor)
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self.admin().create_topics([new])
            except _KafkaFailure as exc:
                self.mark_down(exc)
                raise Unavailable(DEPENDENCY, f"cannot create topic {name}: {exc!r}") from exc
            created = False
            for _, code, *why in response.topic_errors:
                if code not in (0, _TOPIC_EXISTS):
                    raise Unavailable(DEPENDENCY, f"cannot create topic {name}: {code} {why}")
                created = created or code == 0
            self._topics.add(name)
        if created:
            # rare after start-up; when it happens to a topic that was there, it says why
            # records or replies went missing
            log.info("kafka topic created", topic=name, partitions=new.num_partitions, fresh=fresh)
            await self._topic_created(name)
        return name

    async def _topic_created(self, name: str) -> None:
        """Our consumers of a topic made again re-join for it (see catgad.bus.kafka_consumer);
        the reply reader starts it from the beginning."""
        for sub in list(self._subscriptions):
            if sub.name == name:
                sub.topic_made()
        consumer = self._reply_consumer
        if name == self._reply_topic and consumer is not None:
            # the reader's position is in the lost topic, and a broker may answer a fetch
            # beyond the end with nothing rather than "out of range": replies would be
            # read only once the new topic grew past it
            consumer._client.force_metadata_update()
            with contextlib.suppress(*_KafkaFailure):
                await consumer.seek_to_beginning(TopicPartition(name, 0))

    # -- publish -----------------------------------------------------------------

    async def publish(self, topic: str, envelope: Envelope, *, key: str) -> None:
        await self._send(topic, key, envelope.to_json(), {})

    async def publish_raw(
        self, topic: str, raw: bytes, *, key: str, headers: dict[str, str] | None = None
    ) -> None:
        """Put bytes on a topic as a foreign producer would (tests, dead-letter replays)."""
        await self._send(topic, key, raw, headers or {})

    async def _send(self, topic: str, key: str, payload: bytes, headers: dict[str, str]) -> None:
        await self._check_up()
        name = await self.ensure_topic(topic)
        try:
            async with asyncio.timeout(self.timeout):
                await self.producer().send_and_wait(
                    name,
                    payload,
                    key=key.encode(),
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
        except _KafkaFailure as exc:
            self.mark_down(exc)
            raise Unavailable(DEPENDENCY, f"publish to {name} failed: {exc!r}") from exc

    # -- subscribe and serve -------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> KafkaSubscription:
        return await self._join(topic, group, handler_dispatch(handler), on_undecodable)

    async def serve(
        self,
        topic: str,
        group: str,
        responder: Responder,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> KafkaSubscription:
        async def send_reply(headers: Mapping[str, str], reply: Envelope) -> None:
            if REPLY_TO in headers:
                await self._reply(headers, reply)

        dispatch = responder_dispatch(topic, responder, send_reply)
        return await self._join(topic, group, dispatch, on_undecodable)

    async def _reply(self, headers: Mapping[str, str], reply: Envelope) -> None:
        """Send a reply; one that cannot reach its requester in time is dropped, not retried:
        the command is done, and the requester has given up (it would block the partition)."""
        left = int(headers.get(DEADLINE, "0") or 0) / 1000 - time.time()
        try:
            async with asyncio.timeout(max(min(left, self.timeout), 0.1)):
                await self.producer().send_and_wait(
                    headers[REPLY_TO],
                    reply.to_json(),
                    partition=0,
                    headers=[(CORRELATION, headers.get(CORRELATION, "").encode())],
                )
        except _KafkaFailure as exc:
            log.warning("reply not delivered", to=headers[REPLY_TO], error=repr(exc))

    async def _join(
        self, topic: str, group: str, dispatch: Dispatch, on_undecodable: OnUndecodable | None
    ) -> KafkaSubscription:
        name = await self.ensure_topic(topic)
        sub = KafkaSubscription(self, name, group, dispatch, on_undecodable or log_undecodable)
        await sub.start()
        self._subscriptions.add(sub)
        sub.on_stop = self._subscriptions.discard
        return sub

    # -- request -----------------------------------------------------------------

    async def request(
        self,
        topic: str,
        envelope: Envelope,
        *,
        key: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - it travels as the command's deadline
    ) -> Envelope:
        await self._check_up()
        correlation, future = self._replies.expect()
        sending = True
        try:
            async with asyncio.timeout(timeout):
                await self._listen_for_replies()
                headers = request_headers(self._reply_topic, correlation, timeout)
                await self._send(topic, key, envelope.to_json(), headers)
                sending = False
                raw = await future
        except TimeoutError:
            self._replies.forget(correlation)
            if sending:  # the broker took the whole timeout to refuse: treat it as away
                self.mark_down("a request could not be sent in time")
            raise Unavailable(
                DEPENDENCY, f"no reply to {envelope.type} on {topic!r} within {timeout:g}s"
            ) from None
        finally:
            self._replies.forget(correlation)
        return reply_envelope(raw)

    async def _listen_for_replies(self) -> None:
        """Create this bus's reply topic (again, after a broker lost it) and read it from its
        start, before the first request."""
        await self.ensure_topic("", name=self._reply_topic, partitions=1)
        if self._reply_reader is not None:
            return
        async with self._reply_lock:
            if self._reply_reader is not None:
                return
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.url,
                client_id="catgad-bus-replies",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **self.consumer_options,
            )
            no_auto_create(consumer._client)
            try:
                await consumer.start()
                consumer.assign([TopicPartition(self._reply_topic, 0)])
            except _KafkaFailure as exc:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise Unavailable(DEPENDENCY, f"cannot read replies: {exc!r}") from exc
            self._reply_consumer = consumer
            self._reply_reader = asyncio.create_task(self._read_replies(consumer))

    async def _read_replies(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                log.warning("kafka bus reply reader failed; retrying", error=repr(exc))
                await asyncio.sleep(0.5)  # a broker that is away; nothing to wait on instead
                continue
            for records in batches.values():
                for record in records:
                    correlation = dict(record.headers or ()).get(CORRELATION, b"").decode()
                    self._replies.resolve(correlation, record.value or b"")
