"""The outbox relay: every stored event reaches the bus at least once, in order per stream.

The store is the outbox. Among all the daemons sharing a store, one relay per
service works at a time: the one holding the lease `relay:<service>` (see
catgad.store.lease). It reads `read_all` after its checkpoint `relay:<service>`,
publishes each event to the topic `events` keyed by its stream id, in store
order, and only then saves the checkpoint. A crash between the two publishes
the unsaved tail again (consumers deduplicate by event id); nothing is skipped
as long as `read_all` never returns an event below a position it has already
returned (commit order: what GAPLESS_GLOBAL_ORDER declares).

- Before each publish it checks that the lease is still held; once lost, it
  stops publishing and waits in standby. Every (re)gain reloads the checkpoint,
  which may have been moved on by another daemon meanwhile.
- Appends in this process wake it at once (`notify`, the command engine's
  `on_appended`); appends by other processes are found by polling.
- A publish that fails is retried, the same event, with exponential backoff:
  never skipped, never reordered.
- A bus that keeps nothing durable (the memory bus: no DURABLE capability, a
  `join()`) is joined before the checkpoint is saved, so a saved position
  means "handled by the in-process subscribers": after kill -9 they get again
  what they had not handled. A handler that keeps failing holds the relay
  back, as it holds back its partition; consume_with_retries (deadletter.py)
  moves poison messages aside so that cannot last. While no group reads the
  events topic of such a bus (a daemon on the memory bus: nothing in it
  subscribes), nothing is published, since no one could ever receive it: the
  checkpoint moves on past this process's appends unread, and past other
  processes' appends as polling finds them. A group that subscribes later gets
  what is appended from then on.
- `stop()` finishes the batch in hand (without retrying a failing publish),
  saves the checkpoint and releases the lease.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from catgad.bus.protocol import Capability as BusCapability
from catgad.bus.topics import EVENTS_TOPIC
from catgad.config.section import Where, config_error
from catgad.consumer.loop import LogReader, LoopSettings
from catgad.envelope import Envelope
from catgad.observability import tracing
from catgad.store.lease import LeaseKeeper
from catgad.store.protocol import AppendResult, Coordination, EventStore

log = structlog.get_logger(__name__)


class OutboxStore(EventStore, Coordination, Protocol):
    """What the relay needs of a store: its events, a lease and a checkpoint."""


class Publisher(Protocol):
    """What the relay needs of a bus."""

    name: str

    async def publish(self, topic: str, envelope: Envelope, *, key: str) -> None: ...


@runtime_checkable
class Joinable(Protocol):
    """A bus that can wait until everything published so far has been handled."""

    async def join(self) -> None: ...


@runtime_checkable
class Listened(Protocol):
    """A bus that knows whether any consumer group reads a topic."""

    def has_group(self, topic: str) -> bool: ...


def joins_before_checkpoint(bus: object) -> bool:
    """True for a bus whose messages die with the process (see the module docstring)."""
    flags = getattr(bus, "capabilities", BusCapability.NONE)
    return isinstance(bus, Joinable) and not flags & BusCapability.DURABLE


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """`bus.options.relay` of the config; every field may be left out."""

    topic: str = EVENTS_TOPIC
    batch: int = 500  # events read and published between two checkpoints
    lease_ttl: float = 10.0  # seconds; a crashed holder is replaced after at most ~4/3 of it
    poll_interval: float = 0.2  # seconds between looks for other processes' appends
    first_backoff: float = 0.05  # seconds before the first retry of a failed publish
    max_backoff: float = 5.0
    stop_timeout: float = 10.0  # seconds stop() waits for the batch in hand

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any] | None, where: Where | None = None
    ) -> RelaySettings:
        """Settings from a mapping of option names to values; a clear error for a wrong one."""
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            raise config_error(where, "bus.options.relay", f"expected a mapping, got {options!r}")
        defaults = cls()
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key not in cls.__dataclass_fields__:
                known = ", ".join(cls.__dataclass_fields__)
                raise config_error(where, f"bus.options.relay.{key}", f"unknown key ({known})")
            why = _wrong(value, getattr(defaults, key))
            if why:
                raise config_error(where, f"bus.options.relay.{key}", f"{why}, got {value!r}")
            default = getattr(defaults, key)
            values[key] = float(value) if isinstance(default, float) else value
        return cls(**values)


def _wrong(value: Any, default: str | float) -> str | None:
    """What `value` should have been, when it is not of its default's kind."""
    if isinstance(default, str):
        return None if isinstance(value, str) and value else "expected a non-empty string"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, int) and not (isinstance(value, int) and number and value > 0):
        return "expected a positive integer"
    return None if number and value > 0 else "expected a positive number"


def default_owner() -> str:
    """host:pid:random, so an operator can tell which process holds a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _unheard(bus: Listened) -> bool:
    return not bus.has_group(EVENTS_TOPIC)


class Relay:
    """Publishes a store's events to a bus while holding the service's relay lease: the sink of
    a leased, checkpointed LogReader (catgad.consumer.loop), which does the reading, waiting,
    checkpointing and retrying of failed reads."""

    def __init__(
        self,
        store: OutboxStore,
        bus: Publisher,
        service: str,
        settings: RelaySettings | None = None,
        *,
        owner: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings or RelaySettings()
        self.name = f"relay:{service}"  # of the lease and of the checkpoint
        self.owner = owner or default_owner()
        self.lease = LeaseKeeper(store, self.name, self.owner, self.settings.lease_ttl)
        self._join = (
            bus.join if isinstance(bus, Joinable) and joins_before_checkpoint(bus) else None
        )
        # nothing durable and nobody listening: publishing would hand the events to no one
        unheard = (
            functools.partial(_unheard, bus)
            if isinstance(bus, Listened) and joins_before_checkpoint(bus)
            else None
        )
        s = self.settings
        self.loop = LogReader(
            store,
            self,
            name=self.name,
            settings=LoopSettings(
                batch=s.batch,
                poll_interval=s.poll_interval,
                first_backoff=s.first_backoff,
                max_backoff=s.max_backoff,
                stop_timeout=s.stop_timeout,
            ),
            lease=self.lease,
            checkpointed=True,
            on_active=self._active,
            unheard=unheard,
        )
        self.published = 0  # publishes acknowledged by the bus, since start
        self.last_error: str | None = None  # the failing publish's error while retrying
        self._published_total: Counter | None = None
        self._failures_total: Counter | None = None
        if registry is not None:
            self._register(registry)

    # -- state ------------------------------------------------------------------------------

    @property
    def checkpoint(self) -> int:
        """As last saved or loaded (standing by: the holder's progress)."""
        return self.loop.position

    @property
    def head(self) -> int:
        """The highest position this daemon knows of."""
        return self.loop.head

    @property
    def state(self) -> str:
        """stopped · starting · standby (another daemon relays) · active · retrying (bus down)."""
        if self.loop.stopped:
            return "stopped"
        if not self.loop.started:
            return "starting"
        if not self.lease.held():
            return "standby"
        return "retrying" if self.last_error is not None else "active"

    @property
    def lag(self) -> int:
        """Events appended but not relayed yet: head - checkpoint, head as far as known here."""
        return self.loop.lag

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "owner": self.owner,
            "holder": self.lease.holder,
            "checkpoint": self.checkpoint,
            "head": self.head,
            "lag": self.lag,
            "published": self.published,
            "error": self.last_error or self.lease.error,
        }

    def _register(self, registry: CollectorRegistry) -> None:
        Gauge(
            "catgad_relay_active",
            "1 while this daemon's relay holds the lease and publishes, else 0.",
            registry=registry,
        ).set_function(lambda: float(self.state in ("active", "retrying")))
        Gauge(
            "catgad_relay_checkpoint",
            "Global position up to which events were published to the bus.",
            registry=registry,
        ).set_function(lambda: float(self.checkpoint))
        Gauge(
            "catgad_relay_lag_events",
            "Events stored but not yet published: head position minus checkpoint.",
            registry=registry,
        ).set_function(lambda: float(self.lag))
        self._published_total = Counter(
            "catgad_relay_published_events",
            "Events published to the bus by this daemon's relay (re-publishes included).",
            registry=registry,
        )
        self._failures_total = Counter(
            "catgad_relay_publish_failures",
            "Publishes the bus refused or failed; each is retried.",
            registry=registry,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.loop.start()

    def notify(self, result: AppendResult | None = None) -> None:
        """Something was appended in this process: look now rather than at the next poll."""
        self.loop.notify(result)

    async def stop(self) -> None:
        """Finish the batch in hand, save the checkpoint, release the lease."""
        if self.loop.stopped:
            return
        await self.loop.stop()
        log.info("relay stopped", relay=self.name, checkpoint=self.checkpoint)

    def abort(self) -> None:
        """Stop at once: no checkpoint saved, no lease released, as kill -9 leaves it (tests)."""
        self.loop.abort()

    # -- the work (the loop's sink) -----------------------------------------------------------

    def _active(self, checkpoint: int) -> None:
        log.info("relay active", relay=self.name, owner=self.owner, checkpoint=checkpoint)

    async def handle(self, events: list[Envelope]) -> int:
        """Publish in order; how many made it (fewer only when the lease is lost or on stop).
        A bus that keeps nothing is joined first: a checkpoint means handled."""
        sent = len(events)
        for index, event in enumerate(events):
            if not await self._publish_one(event):
                sent = index
                break
        if sent and self._join is not None:
            await self._join()
        return sent

    async def _publish_one(self, event: Envelope) -> bool:
        attempts = 0
        while True:
            if not self.lease.held():
                return False
            try:
                with tracing.event_span("bus.publish", event):
                    await self.bus.publish(self.settings.topic, event, key=event.subject or "")
            except Exception as exc:  # the bus is down or refused: retry this very event
                attempts += 1
                self._failed(event, exc, attempts)
                if self.loop.stopping:
                    return False
                await self.loop.pause(self.loop.backoff(attempts))
                continue
            if self.last_error is not None:
                log.info("bus publish recovered", relay=self.name, attempts=attempts + 1)
                self.last_error = None
            self.published += 1
            if self._published_total is not None:
                self._published_total.inc()
            return True

    def _failed(self, event: Envelope, exc: Exception, attempts: int) -> None:
        self.last_error = str(exc) or type(exc).__name__
        if self._failures_total is not None:
            self._failures_total.inc()
        if attempts == 1 or attempts % 10 == 0:  # a bus down for long: not a line per retry
            log.warning(
                "bus publish failed; retrying",
                relay=self.name,
                event_id=event.id,
                position=event.position,
                attempts=attempts,
                error=self.last_error,
            )
