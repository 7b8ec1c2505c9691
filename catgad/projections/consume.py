"""Applying one batch of events to a target, and what happens to an event that cannot be applied.

A table target gets the batch's operations and the new checkpoint in one
`apply`. When the mapping fails on an event (or the target refuses a batch
for its content, then the batch is retried event by event to find the one at
fault), the events before it are applied, and the poison event is tried again
`retries` times with backoff; then it is recorded as a dead letter and the
checkpoint moves past it, or (on_error: stop) the projection is marked failed
and stays before it. A handler target is told each event, and its checkpoint
saved after the batch.

Unavailable (store, target or handler down) is not poison: it propagates, and
the runner tries the same events again later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from catgad.envelope import Envelope
from catgad.errors import CatgadError, HandlerUnavailable, TargetError, Unavailable
from catgad.observability.logs import get_logger
from catgad.projections import deadletters
from catgad.projections.coalesce import coalesce
from catgad.projections.mapping import Mapper, MappingError, Op, Planned
from catgad.projections.model import ProjectionDef
from catgad.projections.targets.handler import HandlerTarget
from catgad.projections.targets.protocol import ProjectionTarget
from catgad.store.codec import StoredEvent
from catgad.store.protocol import EventStore

log = get_logger("catgad.projections")
POISON_BACKOFF = 0.05  # seconds before the first retry of a failing event; doubles, capped
POISON_BACKOFF_MAX = 2.0
Sleep = Callable[[float], Awaitable[bool]]  # True when interrupted (shutting down)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where the checkpoint is after a batch, and whether the projection must stop (failed)."""

    position: int
    applied: int  # events consumed (applied, skipped as irrelevant or dead-lettered)
    failed: str | None = None  # on_error stop: why
    dead: int = 0  # dead letters recorded
    split: bool = False  # the target refused the batch: go on one event at a time


@dataclass(frozen=True, slots=True)
class Plan:
    """A batch mapped ahead of its write: every event applies cleanly, no row is read."""

    ops: list[Op]
    position: int


class Consumer:
    """Turns batches of events into target writes for one projection."""

    def __init__(
        self,
        projection: ProjectionDef,
        store: EventStore,
        *,
        source: str,
        sleep: Sleep,
    ) -> None:
        self.projection = projection
        self.store = store
        self.mapper = Mapper(projection)
        self.defaults = projection.defaults()
        self.source = source
        self.sleep = sleep

    # -- table targets ----------------------------------------------------------------------

    def plan(self, events: Sequence[Envelope] | Sequence[StoredEvent]) -> Plan | None:
        """The batch's operations, when mapping needs no rows and nothing is poison; None
        leaves the batch to `table` (which reads rows and handles poison). Pure: safe to run
        while the previous batch is being written."""
        if not events:
            return None
        ops: list[Op] = []
        appenders = self.mapper.appenders
        handled = self.mapper.handles
        try:
            for event in events:
                append = appenders.get(event.type)
                if append is not None:
                    append(event, ops)
                elif handled(event.type):
                    return None  # it reads rows
        except MappingError:
            return None
        last = events[-1].position
        if last is None:
            raise Unavailable("event store", "read_all returned an event without a position")
        return Plan(coalesce(ops, self.defaults), last)

    async def write(self, writer: ProjectionTarget, events: Sequence[Envelope], after: int,
                    plan: Plan | None) -> Outcome:  # fmt: skip
        """Apply a batch: its plan at once when it has one, else carefully (`table`)."""
        if plan is not None:
            try:
                await writer.apply(plan.ops, after=after, position=plan.position)
            except TargetError:
                pass  # refused: `table` finds the event at fault
            else:
                return Outcome(plan.position, len(events))
        return await self.table(writer, events, after)

    async def table(
        self, writer: ProjectionTarget, events: Sequence[Envelope], after: int
    ) -> Outcome:
        """Apply `events` (read after checkpoint `after`) to `writer`."""
        ops: list[Op] = []
        poison: tuple[int, str] | None = None
        rows = None
        planned: list[list[Planned]] = []
        for index, event in enumerate(events):
            try:
                planned.append(self.mapper.prepare(event))
            except MappingError as exc:
                poison = (index, str(exc))
                break
        keys = self.mapper.row_keys(p for items in planned for p in items)
        if keys:
            rows = await writer.rows(keys)
        for index, items in enumerate(planned):
            try:
                ops.extend(self.mapper.evaluate(events[index], items, rows))
            except MappingError as exc:
                poison = (index, str(exc))
                break
        cut = len(events) if poison is None else poison[0]
        position = after
        if cut:
            position = _position(events[cut - 1])
            try:
                await writer.apply(coalesce(ops, self.defaults), after=after, position=position)
            except TargetError as exc:
                if cut > 1:
                    log.warning("a batch was refused; applying it event by event", error=str(exc))
                    return Outcome(after, 0, split=True)
                poison = (0, str(exc))
                position = after
        if poison is None:
            return Outcome(position, cut)
        index, reason = poison
        outcome = await self._poison_table(writer, events[index], position, reason)
        return Outcome(outcome.position, index + outcome.applied, outcome.failed, outcome.dead)

    async def _poison_table(
        self, writer: ProjectionTarget, event: Envelope, after: int, reason: str
    ) -> Outcome:
        for retry in range(self.projection.retries):
            if await self.sleep(min(POISON_BACKOFF * 2**retry, POISON_BACKOFF_MAX)):
                return Outcome(after, 0)  # shutting down: the event is tried again next start
            try:
                rows = None
                planned = self.mapper.prepare(event)
                keys = self.mapper.row_keys(planned)
                if keys:
                    rows = await writer.rows(keys)
                ops = self.mapper.evaluate(event, planned, rows)
                await writer.apply(ops, after=after, position=_position(event))
            except (MappingError, TargetError) as exc:
                reason = str(exc)
            else:
                return Outcome(_position(event), 1)
        return await self._give_up(
            event, after, reason, lambda p: writer.apply([], after=after, position=p)
        )

    # -- handler targets --------------------------------------------------------------------

    async def handler(
        self, target: HandlerTarget, events: Sequence[Envelope], after: int
    ) -> Outcome:
        """Tell the handler each event it reads, then save the checkpoint."""
        listed = self.projection.events
        position = after
        dead = 0
        for count, event in enumerate(events):
            if event.type in listed:
                try:
                    await self._deliver(target, event)
                except HandlerUnavailable:
                    if position != after:
                        await target.save(position)  # resume at the event that failed
                    raise
                except CatgadError as exc:
                    outcome = await self._poison_handler(target, event, position, str(exc))
                    if outcome.failed is not None or outcome.position == position:
                        if position != after:
                            await target.save(position)
                        return Outcome(outcome.position, count, outcome.failed)
                    dead += outcome.dead
            position = _position(event)
        if position != after:
            await target.save(position)
        return Outcome(position, len(events), dead=dead)

    async def _deliver(self, target: HandlerTarget, event: Envelope) -> None:
        await target.deliver(event)

    async def _poison_handler(
        self, target: HandlerTarget, event: Envelope, after: int, reason: str
    ) -> Outcome:
        for retry in range(self.projection.retries):
            if await self.sleep(min(POISON_BACKOFF * 2**retry, POISON_BACKOFF_MAX)):
                return Outcome(after, 0)
            try:
                await self._deliver(target, event)
            except HandlerUnavailable:
                raise
            except CatgadError as exc:
                reason = str(exc)
            else:
                return Outcome(_position(event), 1)

        async def move(position: int) -> None:
            return None  # the caller saves the checkpoint after the batch

        return await self._give_up(event, after, reason, move)

    # -- giving up ----------------------------------------------------------------------------

    async def _give_up(
        self, event: Envelope, after: int, reason: str, move: Callable[[int], Awaitable[None]]
    ) -> Outcome:
        attempts = self.projection.retries + 1
        name = self.projection.name
        if self.projection.on_error == "stop":
            log.error(
                "projection stopped on a poison event",
                projection=name,
                event_id=event.id,
                position=event.position,
                reason=reason,
            )
            why = f"event {event.id} ({event.type}) at position {event.position}: {reason}"
            return Outcome(after, 0, failed=why)
        log.warning(
            "poison event dead-lettered",
            projection=name,
            event_id=event.id,
            position=event.position,
            attempts=attempts,
            reason=reason,
        )
        await deadletters.record(self.store, name, event, reason, attempts, self.source)
        await move(_position(event))
        return Outcome(_position(event), 1, dead=1)


def _position(event: Envelope) -> int:
    if event.position is None:
        raise Unavailable("event store", "read_all returned an event without a position")
    return event.position


async def interruptible_sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep unless `stop` is set meanwhile; True when it was."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True
