"""The NATS JetStream bus: a stream per topic, a subject per key, a consumer per group, partition.

Layout, for prefix `catgad`, topic `orders` and 8 partitions:

    stream    catgad__orders              subjects catgad.orders.>   (limits retention)
    subject   catgad.orders.<p>.<key>     p = murmur2(key) % 8, the partition Kafka would pick
    consumer  <group>-p<p>                durable, filter catgad.orders.<p>.>, max_ack_pending 1

Order and groups. NATS has no partitions, so the bus makes them out of
subjects, and gives each (group, partition) a durable pull consumer that lets
one message at a time be unacknowledged (max_ack_pending=1). Every member of a
group pulls from every partition's consumer; the server gives each message to
one waiting pull, and the next one only after the previous was acked. So a
partition's messages are handled one at a time, in stream order, by whichever
member is free: a nak (the handler failed) or an expired ack wait (the member
died) makes the same message the next one delivered, and nothing behind it
overtakes it. Members share the work with no coordination of their own, and
one that leaves loses nothing: stop() finishes the message in hand and hands
back anything fetched after, a crash hands it back after `ack_wait` (a long
handler keeps its message with in-progress acks). The price is one round trip
per message per partition; partitions, not members, bound the parallelism.

Failover. A member killed without leaving (kill -9, a lost machine) holds at
most one message per partition, and the server gives it to another member
`ack_wait` after it last heard of it; a handler that runs longer keeps its
message with an in-progress ack every third of `ack_wait`. So `ack_wait` is
short (2 s by default): a dead daemon's commands, and those queued behind them
on its partitions, are served by another within about 2.5 s. A command the
dead daemon had run but not acknowledged runs again with the same id and finds
its first result (idempotency). A member whose event loop stalls for more than
two thirds of `ack_wait` may see its message go to another member meanwhile
(at least once: a command finds its first result by its id, consumers
deduplicate events by id).

Commands travel the same way (see `catgad.bus.wire` for their headers): one
member at a time serves each partition, in order, and the reply goes back to
the requester's inbox over core NATS. Core NATS keeps nothing for a client
that is away, so when the connection drops every request waiting for its
reply fails at once with `Unavailable` (retrying with the same id is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from catgad import natsclient
from catgad.bus.nats_consumer import Dispatch, NatsSubscription
from catgad.bus.protocol import Capability, Handler, OnUndecodable, Responder
from catgad.bus.topics import (
    check_prefix,
    nats_consumer,
    nats_partition_filter,
    nats_stream,
    nats_subject,
    nats_topic_filter,
    partition_of,
)
from catgad.bus.wire import (
    CORRELATION,
    REPLY_TO,
    PendingReplies,
    handler_dispatch,
    log_undecodable,
    reply_envelope,
    request_headers,
    responder_dispatch,
)
from catgad.config.section import config_error
from catgad.envelope import Envelope
from catgad.errors import Unavailable, UnsupportedServer

log = structlog.get_logger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
DEPENDENCY = "nats bus"
_STREAM_CLASH = 10058  # "stream name already in use with a different configuration"
_WEEK = 7 * 24 * 3600.0


class NatsBus:
    """JetStream transport; see the module docstring for the layout and the ordering argument."""

    name = "nats"
    capabilities = Capability.DURABLE | Capability.SPLITS_GROUP | Capability.REQUEST_REPLY

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        prefix: str = "catgad",
        partitions: int = 8,
        storage: str = "file",
        replicas: int = 1,
        max_age: float = _WEEK,
        duplicate_window: float = 120.0,
        timeout: float = 5.0,
        ack_wait: float = 2.0,
        redelivery_delay: float = 1.0,
        pull_expires: float = 1.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if partitions < 1 or replicas < 1:
            raise config_error(None, "bus.options", "partitions and replicas must be at least 1")
        if storage not in ("file", "memory"):
            raise config_error(None, "bus.options.storage", f"expected file or memory: {storage!r}")
        if min(timeout, ack_wait, pull_expires, stop_timeout) <= 0 or redelivery_delay < 0:
            raise config_error(None, "bus.options", "timeouts must be positive")
        self.url = url
        self.prefix = check_prefix(prefix)
        self.partitions = partitions
        self.storage = StorageType.FILE if storage == "file" else StorageType.MEMORY
        self.replicas = replicas
        self.max_age = max_age
        self.duplicate_window = duplicate_window
        self.timeout = timeout
        self.ack_wait = ack_wait
        self.redelivery_delay = redelivery_delay
        self.pull_expires = pull_expires
        self.stop_timeout = stop_timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._streams: set[str] = set()
        self._stream_lock = asyncio.Lock()
        self._subscriptions: set[NatsSubscription] = set()
        self._replies = PendingReplies()
        self._reply_subject = ""

    # -- connection --------------------------------------------------------------

    async def open(self) -> None:
        if self._nc is not None:
            return
        nc = await natsclient.connect(
            self.url,
            name="catgad-bus",
            timeout=self.timeout,
            dependency=DEPENDENCY,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnect,
        )
        try:
            v = nc.connected_server_version
            why = natsclient.too_old((v.major, v.minor, v.patch), self.url)
            if why is not None:
                raise UnsupportedServer(why)
            self._reply_subject = nc.new_inbox()
            await nc.subscribe(self._reply_subject, cb=self._on_reply)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, nc.jetstream(timeout=self.timeout)

    async def close(self) -> None:
        await asyncio.gather(*(s.stop() for s in list(self._subscriptions)))
        self._replies.fail_all(Unavailable(DEPENDENCY, "the bus was closed"))
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await nc.close()

    async def ping(self) -> None:
        js = self.jetstream()
        try:
            async with asyncio.timeout(self.timeout):
                await js.account_info()
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            why = f"JetStream at {self.url} does not answer: {exc!r}"
            raise Unavailable(DEPENDENCY, why) from exc

    def client(self) -> Client:
        if self._nc is None:
            raise Unavailable(DEPENDENCY, "the bus is not open")
        if not self._nc.is_connected:
            # fail now rather than queue behind a reconnect the caller cannot see
            raise Unavailable(DEPENDENCY, f"not connected to {self.url} (reconnecting)")
        return self._nc

    def jetstream(self) -> JetStreamContext:
        self.client()
        assert self._js is not None
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats bus connection error", url=self.url, error=repr(exc))

    async def _on_disconnect(self) -> None:
        # replies travel over core NATS: one sent while we are away is lost, not kept for
        # the reconnect, so a waiting request would only wait out its timeout
        if self._nc is None or self._nc.is_closed:
            return  # closing, not a lost connection: close() fails them with its own reason
        log.warning("nats bus disconnected; reconnecting", url=self.url)
        self._replies.fail_all(
            Unavailable(DEPENDENCY, f"connection to {self.url} lost before the reply came")
        )

    # -- streams and consumers -----------------------------------------------------

    async def ensure_stream(self, topic: str) -> str:
        name = nats_stream(self.prefix, topic)
        if name in self._streams:
            return name
        async with self._stream_lock:
            if name in self._streams:
                return name
            config = StreamConfig(
                name=name,
                subjects=[nats_topic_filter(self.prefix, topic)],
                retention=RetentionPolicy.LIMITS,  # every group reads the whole topic
                storage=self.storage,
                num_replicas=self.replicas,
                max_age=self.max_age,
                duplicate_window=self.duplicate_window,
            )
            try:
                await self.jetstream().add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_CLASH:
                    raise Unavailable(DEPENDENCY, f"cannot create stream {name}: {exc}") from exc
                # an operator changed its limits: theirs stand
                log.info("nats bus stream exists with another config; using it", stream=name)
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                raise Unavailable(DEPENDENCY, f"cannot create stream {name}: {exc!r}") from exc
            self._streams.add(name)
            return name

    def forget_stream(self, topic: str) -> None:
        self._streams.discard(nats_stream(self.prefix, topic))

    async def ensure_consumer(self, topic: str, group: str, partition: int) -> str:
        stream = await self.ensure_stream(topic)
        config = ConsumerConfig(
            durable_name=nats_consumer(group, partition),
            filter_subject=nats_partition_filter(self.prefix, topic, partition),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,  # a poison message is the dead-letter helper's to end
            max_ack_pending=1,  # the whole ordering argument: see the module docstring
        )
        try:
            await self.jetstream().add_consumer(stream, config)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            raise Unavailable(DEPENDENCY, f"cannot create consumer for {group!r}: {exc!r}") from exc
        return stream

    # -- publish -----------------------------------------------------------------

    async def publish(self, topic: str, envelope: Envelope, *, key: str) -> None:
        # the server drops a second copy of one event id within duplicate_window
        await self._send(topic, key, envelope.to_json(), {"Nats-Msg-Id": envelope.id})

    async def publish_raw(
        self, topic: str, raw: bytes, *, key: str, headers: dict[str, str] | None = None
    ) -> None:
        """Put bytes on a topic as a foreign producer would (tests, dead-letter replays)."""
        await self._send(topic, key, raw, headers or {})

    async def _send(self, topic: str, key: str, payload: bytes, headers: dict[str, str]) -> None:
        subject = nats_subject(self.prefix, topic, partition_of(key, self.partitions), key)
        for attempt in (1, 2):
            stream = await self.ensure_stream(topic)
            try:
                await self.jetstream().publish(
                    subject, payload, timeout=self.timeout, stream=stream, headers=headers
                )
                return
            except (nats.js.errors.NoStreamResponseError, nats.js.errors.NotFoundError) as exc:
                # the stream went away (deleted, or a memory-storage server restarted)
                self.forget_stream(topic)
                if attempt == 2:
                    raise Unavailable(DEPENDENCY, f"no stream takes {subject}: {exc!r}") from exc
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                raise Unavailable(DEPENDENCY, f"publish to {subject} failed: {exc!r}") from exc

    # -- subscribe and serve -------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> NatsSubscription:
        return await self._join(topic, group, handler_dispatch(handler), on_undecodable)

    async def serve(
        self,
        topic: str,
        group: str,
        responder: Responder,
        *,
        on_undecodable: OnUndecodable | None = None,
    ) -> NatsSubscription:
        async def send_reply(headers: Mapping[str, str], reply: Envelope) -> None:
            reply_to = headers.get(REPLY_TO)
            if reply_to:
                correlation = {CORRELATION: headers.get(CORRELATION, "")}
                await self.client().publish(reply_to, reply.to_json(), headers=correlation)

        dispatch = responder_dispatch(topic, responder, send_reply)
        return await self._join(topic, group, dispatch, on_undecodable)

    async def _join(
        self, topic: str, group: str, dispatch: Dispatch, on_undecodable: OnUndecodable | None
    ) -> NatsSubscription:
        sub = NatsSubscription(self, topic, group, dispatch, on_undecodable or log_undecodable)
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
        self.client()
        correlation, future = self._replies.expect()
        headers = request_headers(self._reply_subject, correlation, timeout)
        try:
            async with asyncio.timeout(timeout):
                await self._send(topic, key, envelope.to_json(), headers)
                raw = await future
        except TimeoutError:
            raise Unavailable(
                DEPENDENCY, f"no reply to {envelope.type} on {topic!r} within {timeout:g}s"
            ) from None
        finally:
            self._replies.forget(correlation)
        return reply_envelope(raw)

    async def _on_reply(self, msg: Msg) -> None:
        self._replies.resolve((msg.headers or {}).get(CORRELATION), msg.data)
