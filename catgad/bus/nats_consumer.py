"""One member of a NATS consumer group: a pull loop per partition, one message in hand at a time.

Why each step is as it is (the ordering argument is in `catgad.bus.nats`):
- a pull asks for one message and expires after `pull_expires`; stop() waits
  for the pull in flight to end instead of cancelling it, because a message
  the server sends to a cancelled pull would sit unacknowledged, holding its
  partition, until `ack_wait`;
- anything fetched once stop() was called is nak'ed at once, so the group's
  other members get it without delay; a handler still running after
  `stop_timeout` is cancelled and its message nak'ed likewise;
- a handler that fails gets a nak with `redelivery_delay`; the partition
  waits rather than spinning on a poison message;
- while a handler runs, an in-progress ack every third of `ack_wait` keeps
  the server from giving its message to another member.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from catgad.bus.protocol import OnUndecodable
from catgad.bus.topics import nats_consumer
from catgad.bus.wire import decode
from catgad.envelope import Envelope
from catgad.errors import Unavailable

if TYPE_CHECKING:
    from catgad.bus.nats import NatsBus

log = structlog.get_logger(__name__)

Dispatch = Callable[[Envelope, Mapping[str, str]], Awaitable[None]]
_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)  # seconds between retries while the server is away


class _KeepAlive:
    """In-progress acks for a message whose handler runs long (a timer, not a task per message)."""

    def __init__(self, msg: Msg, every: float) -> None:
        self._msg = msg
        self._every = every
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(every, self._tick)
        self._tasks: set[asyncio.Task[None]] = set()

    def _tick(self) -> None:
        task = self._loop.create_task(self._ping())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._handle = self._loop.call_later(self._every, self._tick)

    async def _ping(self) -> None:
        with contextlib.suppress(nats.errors.Error, OSError):
            await self._msg.in_progress()

    def cancel(self) -> None:
        self._handle.cancel()


class NatsSubscription:
    """A member of `group` on `topic`: pulls from every partition's durable consumer."""

    def __init__(
        self,
        bus: NatsBus,
        topic: str,
        group: str,
        dispatch: Dispatch,
        on_undecodable: OnUndecodable,
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self._dispatch = dispatch
        self._on_undecodable = on_undecodable
        self._pulls: list[JetStreamContext.PullSubscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.on_stop: Callable[[NatsSubscription], None] | None = None

    async def start(self) -> None:
        try:
            self._pulls = list(
                await asyncio.gather(*(self._bind(p) for p in range(self.bus.partitions)))
            )
        except BaseException:
            await self._unsubscribe()
            raise
        self._tasks = [
            asyncio.create_task(self._run(p), name=f"bus:{self.topic}:{self.group}:{p}")
            for p in range(self.bus.partitions)
        ]

    async def _bind(self, partition: int) -> JetStreamContext.PullSubscription:
        stream = await self.bus.ensure_consumer(self.topic, self.group, partition)
        try:
            return await self.bus.jetstream().pull_subscribe_bind(
                durable=nats_consumer(self.group, partition), stream=stream
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            raise Unavailable("nats bus", f"cannot pull for {self.group!r}: {exc!r}") from exc

    async def stop(self) -> None:
        """Finish the messages in hand, hand back any fetched since, leave; twice is harmless."""
        self._stopping.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            # a handler stuck past stop_timeout is cancelled: its message goes back (nak)
            _, late = await asyncio.wait(tasks, timeout=self.bus.stop_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._unsubscribe()
        if self.on_stop is not None:
            self.on_stop(self)
        # acks are buffered by the client; the next member must not get these messages again
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.bus.timeout):
                await self.bus.client().flush()

    async def _unsubscribe(self) -> None:
        pulls, self._pulls = self._pulls, []
        for pull in pulls:
            with contextlib.suppress(Exception):
                await pull.unsubscribe()

    async def _run(self, p: int) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self.bus.client()
                msgs = await self._pulls[p].fetch(1, timeout=self.bus.pull_expires)
            except nats.errors.TimeoutError:
                failures = 0
                continue
            except (Unavailable, OSError, nats.errors.Error) as exc:
                failures += 1
                await self._after_failure(p, failures, exc)
                continue
            failures = 0
            for msg in msgs:
                if self._stopping.is_set():
                    await self._settle(msg.nak(), msg)  # another member takes it now
                else:
                    await self._handle(msg)

    async def _after_failure(self, p: int, failures: int, exc: BaseException) -> None:
        """Wait out a server that is away; re-create a consumer that is gone."""
        log.warning(
            "nats bus pull failed; retrying",
            topic=self.topic,
            group=self.group,
            partition=p,
            error=repr(exc),
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_BACKOFF[min(failures, len(_BACKOFF)) - 1]):
                await self._stopping.wait()
        if failures >= 3 and not self._stopping.is_set():
            # the stream or consumer may be gone (a server restarted without its store)
            with contextlib.suppress(Unavailable):
                self.bus.forget_stream(self.topic)
                old, self._pulls[p] = self._pulls[p], await self._bind(p)
                with contextlib.suppress(Exception):
                    await old.unsubscribe()

    async def _handle(self, msg: Msg) -> None:
        raw = msg.data
        found = decode(raw)
        if isinstance(found, str):
            try:
                await self._on_undecodable(raw, found)
            except Exception:
                log.exception("on_undecodable failed; the message is kept", reason=found)
                await self._settle(msg.nak(delay=self.bus.redelivery_delay), msg)
                return
            await self._settle(msg.ack(), msg)
            return
        keep_alive = _KeepAlive(msg, self.bus.ack_wait / 3)
        try:
            await self._dispatch(found, msg.headers or {})
        except asyncio.CancelledError:
            await self._settle(msg.nak(), msg)
            raise
        except Exception:
            log.exception(
                "bus handler failed; redelivering",
                topic=self.topic,
                group=self.group,
                event_id=found.id,
                type=found.type,
            )
            await self._settle(msg.nak(delay=self.bus.redelivery_delay), msg)
        else:
            await self._settle(msg.ack(), msg)
        finally:
            keep_alive.cancel()

    async def _settle(self, outcome: Awaitable[None], msg: Msg) -> None:
        """Send an ack or nak; if lost, the server redelivers after ack_wait (at least once)."""
        try:
            await outcome
        except (nats.errors.Error, OSError) as exc:
            log.warning("nats bus ack lost; the message will come again", error=repr(exc))
