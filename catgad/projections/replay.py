"""Replaying a projection's dead letters after a fix, and redelivering a range to a handler.

A dead letter's event is applied to the live read model as it is now, after
every later event the projection already applied (replay cannot go back in
time: when order matters, rebuild instead, which applies every event in
order). The write is made with the checkpoint unchanged, by compare-and-set,
so it is safe while the projection runs on any daemon: if the checkpoint
moved meanwhile, the rows are read again and the write retried. A replayed
dead letter is closed by a `catgad.deadletter.replayed` event; one that still
fails stays open, with the new reason in the answer. Replays are at least
once: a crash between the write and the closing event replays it again.
"""

from __future__ import annotations

from typing import Any

from catgad.envelope import Envelope
from catgad.errors import CatgadError, Fenced, HandlerUnavailable, TargetError
from catgad.projections import deadletters
from catgad.projections.deadletters import DeadLetter
from catgad.projections.mapping import Mapper, MappingError
from catgad.projections.model import ProjectionDef
from catgad.projections.targets.handler import HandlerTarget
from catgad.projections.targets.protocol import ProjectionTarget
from catgad.store.protocol import EventStore

_FENCED_RETRIES = 20


async def replay_letters(
    projection: ProjectionDef,
    store: EventStore,
    target: ProjectionTarget | HandlerTarget,
    source: str,
    *,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Replay the open dead letters (or the one of `event_id`); what happened to each."""
    letters = await deadletters.open_letters(store, projection.name)
    if event_id is not None:
        letters = [letter for letter in letters if letter.event.id == event_id]
    replayed: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    mapper = Mapper(projection)
    for letter in letters:
        try:
            await _replay_one(mapper, target, letter, await _as_stored(store, letter.event))
        except (MappingError, TargetError, CatgadError) as exc:
            if isinstance(exc, HandlerUnavailable):
                raise
            reason = exc.detail if isinstance(exc, CatgadError) else str(exc)
            failed.append({**letter.to_dict(), "reason": reason})
            continue
        await deadletters.mark_replayed(store, projection.name, letter, "applied", source)
        replayed.append(letter.to_dict())
    return {"projection": projection.name, "replayed": replayed, "failed": failed}


async def _as_stored(store: EventStore, event: Envelope) -> Envelope:
    """The event as the store holds it now (a repair, `catgad migrate`, may have rewritten it
    since it was dead-lettered); the letter's copy when it cannot be found."""
    if not event.position:
        return event
    found = await store.read_all(after=event.position - 1, limit=1)
    return found[0] if found and found[0].id == event.id else event


async def _replay_one(
    mapper: Mapper,
    target: ProjectionTarget | HandlerTarget,
    letter: DeadLetter,
    event: Envelope,
) -> None:
    if isinstance(target, HandlerTarget):
        await target.deliver(event)
        return
    for _ in range(_FENCED_RETRIES):
        after = (await target.meta()).position
        planned = mapper.prepare(event)
        keys = mapper.row_keys(planned)
        rows = await target.rows(keys) if keys else None
        try:
            await target.apply(mapper.evaluate(event, planned, rows), after=after, position=after)
        except Fenced:
            continue  # the projection moved on meanwhile: read the rows again
        return
    raise TargetError(target.name, "the projection kept moving; try the replay again")


async def redeliver(
    projection: ProjectionDef, store: EventStore, target: HandlerTarget, first: int, last: int
) -> int:
    """Deliver the projection's events at positions first..last again; how many were sent."""
    sent = 0
    after = first - 1
    while after < last:
        batch = await store.read_all(after=after, limit=min(projection.batch, last - after))
        if not batch:
            break
        for event in batch:
            if event.type in projection.events:
                await target.deliver(event)
                sent += 1
        after = batch[-1].position or last
    return sent
