"""One projection's consumer: holds its lease, reads the store from the target's checkpoint in
batches, applies them, rebuilds beside the live read model, and reports its status.

Among the daemons sharing a store, the holder of the lease `projection:<name>`
(catgad.store.lease) applies; the others stand by and take over from the
target's checkpoint when the holder's lease lapses. The checkpoint moves with
each write by compare-and-set (see targets.protocol), so even two holders at
once (a stalled one that lost its lease) never apply an event twice: the late
one is Fenced, and stands by again.

Control (stop, start, rebuild) is recorded in the target, so it reaches the
holder wherever it runs: the holder rereads it at least every lease period
and at once when the request came to its own daemon. A rebuild fills a shadow
read model from position 0 while queries keep reading the old one (which takes
no new events meanwhile); when the shadow has caught up with the head, one
transaction swaps them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from catgad import heap
from catgad.consumer.loop import Loop, LoopSettings
from catgad.envelope import Envelope
from catgad.errors import CatgadError, CircuitOpen, Fenced
from catgad.observability import tracing
from catgad.observability.logs import get_logger
from catgad.projections.consume import Consumer, Outcome, Plan, interruptible_sleep
from catgad.projections.feed import AppendFeed
from catgad.projections.metrics import ProjectionMetrics
from catgad.projections.model import ProjectionDef
from catgad.projections.progress import Rate, head_position
from catgad.projections.records import Envelopes, record_reader
from catgad.projections.status import Status, describe
from catgad.projections.targets.handler import HandlerTarget
from catgad.projections.targets.protocol import Meta, ProjectionTarget
from catgad.store.codec import StoredEvent
from catgad.store.lease import LeaseKeeper, Sharing
from catgad.store.protocol import Capability, Coordination, EventStore

log = get_logger("catgad.projections")
Target = ProjectionTarget | HandlerTarget


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    lease_ttl: float = 10.0  # a dead holder is replaced within about 4/3 of this
    poll_interval: float = 0.05  # seconds between looks at the store for other daemons' appends
    backoff_initial: float = 0.1  # after a failure (store or target down), doubling...
    backoff_max: float = 5.0  # ...up to this
    linger: float = 0.02  # seconds a busy projection waits to gather a larger batch


def lease_name(projection: str) -> str:
    """The lease under which one daemon at a time applies `projection`."""
    return f"projection:{projection}"


class ProjectionRunner:
    """Runs one projection until stop(); status() at any time, on any daemon."""

    def __init__(
        self,
        projection: ProjectionDef,
        store: EventStore,
        target: Target,
        *,
        owner: str,
        source: str,
        settings: RunnerSettings | None = None,
        metrics: ProjectionMetrics | None = None,
        sharing: Sharing | None = None,
        feed: AppendFeed | None = None,
    ) -> None:
        self.projection = projection
        self.name = projection.name
        self.store = store
        self.target = target
        self.owner = owner
        self.settings = settings or RunnerSettings()
        self.metrics = metrics
        self.lease = (
            LeaseKeeper(
                store, lease_name(self.name), owner, self.settings.lease_ttl, sharing=sharing
            )
            if isinstance(store, Coordination)
            else None
        )
        self.consumer = Consumer(projection, store, source=source, sleep=self._sleep)
        self.position = 0  # live checkpoint, as last read or written here
        self._in_store = 0  # a checkpoint whose event this runner saw in the store
        self.rebuild_position: int | None = None
        self.state: Status = "running"
        self.last_error: str | None = None
        self.retrying = False
        self.rebuild_head = 0  # head when the rebuild started (progress)
        self.rate = Rate()
        self.seen = 0  # highest position read: known to exist (head hint)
        self._active = False  # holding the lease and loaded from the target
        self._reload = True
        self._refresh_at = 0.0
        self._single_until = 0  # apply one event at a time up to here (finding a poison one)
        self._failures = 0
        self._failure_kind: type[Exception] | None = None
        self.stepped = asyncio.Event()  # set after every turn of the loop
        # the shared consumer loop (catgad.consumer.loop): turns, idling, backoff, stop
        self.loop = Loop(
            f"projection:{self.name}",
            self._step,
            LoopSettings(
                poll_interval=self.settings.poll_interval,
                stop_timeout=None,
                linger=self.settings.linger,
            ),
            idle=self._idle,
            failed=self._failed,
            recovered=self._recovered,
            turned=self.stepped.set,
        )
        self._opened = False
        self._records = record_reader(store)
        # this process's appends, taken unread by the live loop: not a handler target's, and
        # only from a store whose positions are its read order (catgad.projections.feed)
        ordered = Capability.GAPLESS_GLOBAL_ORDER in getattr(store, "capabilities", Capability.NONE)
        self._feed = feed if ordered and not isinstance(target, HandlerTarget) else None
        self._mapped = frozenset(projection.on)  # the types whose bodies are decoded
        self._applies = self._mapped | frozenset(projection.events)  # a handler's, too
        self._shadow: ProjectionTarget | None = None
        self._opening = asyncio.Lock()
        self.redelivering = False  # a handler target's rebuild: delivering everything again
        self._reset_asked = False
        self.changed = asyncio.Event()  # set after a swap or a stop on poison (waiters clear it)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the target now (the loop opens it otherwise): for queries and control without
        consuming, as the CLI does."""
        async with self._opening:
            if not self._opened:
                await self.target.open()
                self._opened = True

    def start(self) -> None:
        heap.freeze()  # a catch-up's batches would otherwise walk the startup heap
        if not self.loop.started and not self.loop.stopped:
            if self.lease is not None:
                self.lease.start()
            self.loop.start()

    @property
    def _task(self) -> asyncio.Task[None] | None:
        """The loop's task (tests watch it end)."""
        return self.loop.task

    def notify(self) -> None:
        """New events were appended in this process."""
        self.loop.notify()

    def poke(self) -> None:
        """Reread the control state from the target now."""
        self._reload = True
        self.loop.notify()

    async def stop(self) -> None:
        """Finish the batch in hand, release the lease, close the target."""
        await self.loop.stop()
        if self.lease is not None:
            await self.lease.stop(release=True)
        await self.target.close()

    def abort(self) -> None:
        """Stop at once, as kill -9 would: nothing released or closed (tests)."""
        self.loop.abort()
        if self.lease is not None:
            self.lease.abandon()

    @property
    def opened(self) -> bool:
        return self._opened

    @property
    def active(self) -> bool:
        return self._active and (self.lease is None or self.lease.held())

    # -- the loop -----------------------------------------------------------------------------

    async def _step(self) -> bool:
        """One turn of the loop; False when there was nothing to do."""
        try:
            progressed = await self._turn()
        except Fenced as exc:
            log.warning("projection moved on elsewhere; standing by", projection=self.name,
                        detail=exc.detail)  # fmt: skip
            self._active = False
            return True
        self.retrying = False
        return progressed

    def _recovered(self) -> None:
        log.info("projection recovered", projection=self.name)
        self._failures = 0

    async def _turn(self) -> bool:
        """One step; False when there was nothing to do."""
        await self.open()
        if self.lease is not None and not self.lease.held():
            self._active = False
            await self._wait(self.lease.period, lease=True)
            return True
        now = time.monotonic()
        if not self._active or self._reload or now >= self._refresh_at:
            await self._load(await self.target.meta())
            self._active = True
            await self._check_checkpoint()  # on every load: a resume must not skip either
        if self.state in ("stopped", "failed"):
            return False
        if self._reset_asked:  # a handler target's rebuild: deliver everything again
            assert isinstance(self.target, HandlerTarget)
            await self.target.reset(0)
            self.position, self.redelivering, self._reset_asked = 0, True, False
            self.state = "rebuilding"
        if self.rebuild_position is not None:
            return await self._rebuild_step()
        return await self._live_step()

    async def _check_checkpoint(self) -> None:
        """A read model whose checkpoint lies beyond the store's last event was built from
        another store (or the store was emptied since): following it would skip every event
        up to that position without a word. It fails instead, saying so, until rebuilt."""
        if self.state != "running" or self.rebuild_position is not None:
            return
        if self.position in (0, self._in_store):  # what this runner read: no need to look
            return
        if await self.store.read_all(after=self.position - 1, limit=1):
            self._in_store = self.position
            return
        head = await head_position(self.store)  # appends since may have passed the checkpoint
        now = f"ends at {head}" if head < self.position else f"reaches {head} only now"
        reason = (
            f"the read model's checkpoint is at position {self.position}, but the event "
            f"store held no event there (it {now}): the read model was built from another "
            f"store, or the store was emptied since; rebuild it (catgad rebuild CONFIG "
            f"{self.name}, or POST /projections/{self.name}/rebuild)"
        )
        log.error("projection ahead of the event store", projection=self.name,
                  checkpoint=self.position, head=head)  # fmt: skip
        await self.target.set_state("failed", reason)
        self.state, self.last_error = "failed", reason
        self.changed.set()

    async def _load(self, meta: Meta) -> None:
        self._reload = False
        self._refresh_at = time.monotonic() + (self.lease.period if self.lease else 1.0)
        self.position = meta.position
        self.last_error = meta.error if meta.state == "failed" else self.last_error
        was = self.rebuild_position
        self.rebuild_position = meta.rebuild_position
        if meta.state != "running":
            self.state = meta.state
        elif self.rebuild_position is not None or self.redelivering or self._reset_asked:
            self.state = "rebuilding"
        else:
            self.state = "running"
        if self.rebuild_position is not None and was is None:
            self.rebuild_head = await head_position(self.store, self.seen)
            self.rate.reset()

    async def _read(
        self, after: int, *, live: bool = False
    ) -> tuple[Sequence[Envelope], Plan | None, bool]:
        """The next batch, its plan when it maps cleanly (Consumer.plan), and whether it is
        this process's appends up to the newest (`live`: taken from the feed when it holds
        them, unread; catgad.projections.feed).

        Nothing is read ahead while a batch is written: the store's reader thread, the
        target's writer thread and the mapping share one interpreter lock, and overlapping
        them cost a quarter to a third more CPU per event in a catch-up than taking turns,
        and were slower for it on a shared two-core machine (bench/RESULTS-projections.md)."""
        limit = 1 if after < self._single_until else self.projection.batch
        fed = self._feed.after(after, limit) if live and self._feed is not None else []
        if fed:
            events: Sequence[Envelope] = fed
            plan = self.consumer.plan(fed)
        elif isinstance(self.target, HandlerTarget):
            events = await self.store.read_all(after=after, limit=limit)
            plan = None
        elif self._records is not None:
            records = await self._records.read_records(after=after, limit=limit, types=self._mapped)
            events, plan = Envelopes(records), self.consumer.plan(records)
        else:
            events = await self.store.read_all(after=after, limit=limit)
            plan = self.consumer.plan(events)
        if events:
            self.seen = max(self.seen, events[-1].position or 0)
        to_head = bool(fed) and self._feed is not None and fed[-1].position == self._feed.head
        return events, plan, to_head

    async def _live_step(self) -> bool:
        events, plan, to_head = await self._read(self.position, live=True)
        if not events:
            if self.redelivering:  # a handler target's rebuild has caught up
                self.redelivering = False
                self.state = "running"
                self.changed.set()
            return False
        outcome = await self._consume(events, self.position, shadow=False, plan=plan)
        if self.metrics is not None:
            self.metrics.applied(self.name, events[: outcome.applied], live=True)
        self.position = self._in_store = outcome.position
        if self.redelivering:
            self.rate.add(outcome.position)
        # at the feed's end: caught up as far as this process knows (another's appends are
        # found by the next poll, or as a gap once this process appends again)
        return not (to_head and outcome.applied == len(events))

    async def _rebuild_step(self) -> bool:
        assert self.rebuild_position is not None and not isinstance(self.target, HandlerTarget)
        events, plan, _ = await self._read(self.rebuild_position)
        if not events:
            await self.target.swap(after=self.rebuild_position)
            log.info("rebuild done: swapped", projection=self.name, position=self.rebuild_position)
            self._shadow = None
            self.changed.set()
            self.position, self.rebuild_position, self.state = (
                self.rebuild_position,
                None,
                "running",
            )
            return True
        outcome = await self._consume(events, self.rebuild_position, shadow=True, plan=plan)
        if self.metrics is not None:
            self.metrics.applied(self.name, events[: outcome.applied], live=False)
        self.rebuild_position = outcome.position
        self.rate.add(outcome.position)
        return True

    def _traced(self, events: Sequence[Envelope]) -> Envelope:
        """The event whose trace a batch's one span joins: the last the projection applies
        (a batch may hold several commands' events; those it only passes over, say a saga's
        next command's, have traces of their own), else the batch's last."""
        typed: Sequence[Envelope] | Sequence[StoredEvent] = (
            events.records if isinstance(events, Envelopes) else events
        )
        for index in range(len(typed) - 1, -1, -1):
            if typed[index].type in self._applies:
                return events[index]
        return events[-1]

    async def _consume(
        self, events: Sequence[Envelope], after: int, *, shadow: bool, plan: Plan | None
    ) -> Outcome:
        target = self.target
        with tracing.event_span(
            "project", self._traced(events), **{"catgad.projection": self.name}
        ):
            if isinstance(target, HandlerTarget):
                outcome = await self.consumer.handler(target, events, after)
            else:
                writer = self._shadow if shadow and self._shadow is not None else target
                if shadow and writer is target:
                    writer = self._shadow = target.shadow_target()
                outcome = await self.consumer.write(writer, events, after, plan)
        if outcome.split:
            self._single_until = events[-1].position or 0
        if outcome.dead and self.metrics is not None:
            self.metrics.dead_lettered(self.name, outcome.dead)
        if outcome.failed is not None:
            await self.target.set_state("failed", outcome.failed)
            self.state, self.last_error = "failed", outcome.failed
            self.changed.set()
        return outcome

    def _failed(self, exc: Exception, failures: int) -> float:
        """Store, target or handler down (or a bug): how long to wait before trying the same
        events again."""
        self._failures = failures
        self.retrying = True
        detail = exc.detail if isinstance(exc, CatgadError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, CatgadError):
            log.exception("projection step failed", projection=self.name)
        elif self._failures == 1 or type(exc) is not self._failure_kind:
            # once per outage (and per kind of trouble), not once per retry
            log.warning("projection waiting: target or store unavailable", projection=self.name,
                        error=detail)  # fmt: skip
        self._failure_kind = type(exc)
        self.last_error = detail
        self._reload = True
        delay = min(self.settings.backoff_initial * 2 ** min(self._failures - 1, 16),
                    self.settings.backoff_max)  # fmt: skip
        if isinstance(exc, CircuitOpen):  # nothing is sent before its probe is due
            delay = max(delay, exc.retry_after)
        return float(delay)

    async def _idle(self) -> None:
        """Nothing to read: wait for an append here, a control request, or the next poll."""
        if self.state in ("stopped", "failed") or not self.active:
            await self._wait(self.lease.period if self.lease else 1.0, lease=True)
        else:
            await self._wait(self.settings.poll_interval)

    async def _wait(self, seconds: float, *, lease: bool = False) -> None:
        if lease and self.lease is not None:
            await self.loop.wait(seconds, self.lease.wait_change(seconds))
        else:
            await self.loop.wait(seconds)

    async def _sleep(self, seconds: float) -> bool:
        return await interruptible_sleep(self.loop.closing, seconds)

    # -- control ------------------------------------------------------------------------------

    async def request_rebuild(self) -> bool:
        """Start a rebuild (False: one is already under way)."""
        await self.open()
        meta = await self.target.meta()
        if isinstance(self.target, HandlerTarget):
            if self.redelivering or self._reset_asked:
                return False
            self._reset_asked = True  # done by the loop, between two batches
        else:
            if meta.rebuild_position is not None:
                return False
            await self.target.begin_rebuild()
            self.rebuild_position = 0
        if meta.state != "running":
            await self.target.set_state("running")
        self.state = "rebuilding"
        self.rebuild_head = await head_position(self.store, self.seen)
        self.rate.reset()
        self.poke()
        return True

    async def set_running(self, running: bool) -> None:
        await self.open()
        await self.target.set_state("running" if running else "stopped")
        if running:
            self.last_error = None
            busy = self.rebuild_position is not None or self.redelivering
            self.state = "rebuilding" if busy else "running"
        else:
            self.state = "stopped"  # a batch in flight still lands; nothing after it
        self.poke()

    # -- status -------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """What GET /projections/{name} shows (catgad.projections.status)."""
        return await describe(self)

    async def caught_up(self, position: int) -> None:
        """Return once the live read model has applied up to `position` (tests, benches)."""
        while not (
            self.active
            and self.position >= position
            and self.rebuild_position is None
            and not self.redelivering
            and not self._reset_asked
            and self.state != "rebuilding"
        ):
            self.stepped.clear()
            await self.stepped.wait()
