"""Migration: rewrite stored events to their newest schema version, through the upcasters.

One pass over the store in global order, a page at a time: each event below
its type's version is upcast, checked against the newest schema and the page's
upcast events are rewritten (numbers normalised as the schema declares them,
catgad.aggregates.numbers). An event already current whose numbers are not as
its schema declares (5.0 in an `integer` field, stored before catgad
normalised them; rules that multiply it fail) is rewritten with them
normalised, which repairs a stream that could not be read back. Both are
rewritten in one store transaction (RewritableStore.rewrite:
data and dataschemaversion replaced in place, nothing else moves; an event can
be changed, never lost). Nothing is written in a dry run.

Interrupting is safe at any moment: a page is written whole or not at all, and
a new run skips what is already current, so it resumes where the last one
stopped. A running daemon may keep serving meanwhile: it reads old and new
events alike through the same upcasters, and what it appends is current.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson

from catgad.aggregates.model import EventDef
from catgad.envelope import Envelope
from catgad.errors import (
    NotRewritable,
    StoreError,
    UpcastFailed,
)
from catgad.evolution.upcast import Upcasters
from catgad.model import Config
from catgad.store.protocol import EventStore, RewritableStore

Stop = Literal["interrupted", "limit"]


@dataclass(frozen=True, slots=True)
class Failure:
    event_id: str
    event_type: str
    stream: str
    why: str


@dataclass(slots=True)
class MigrationReport:
    """What a migration found and did (in a dry run: would do)."""

    dry_run: bool
    scanned: int = 0
    upcast: int = 0  # rewritten, or in a dry run: would be
    normalised: int = 0  # current, rewritten only for their numbers (or would be)
    current: int = 0  # already at their newest version (or of a type without versions)
    unreachable: int = 0  # older than their type's version, but no upcasters lead up from it
    failed: list[Failure] = field(default_factory=list)
    steps: Counter[tuple[str, int, int]] = field(default_factory=Counter)  # (type, from, to)
    stopped: Stop | None = None
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        """Events scanned per second."""
        return self.scanned / self.elapsed if self.elapsed > 0 else 0.0


async def migrate(
    store: EventStore,
    config: Config,
    upcasters: Upcasters,
    *,
    dry_run: bool = False,
    batch: int = 500,
    limit: int | None = None,
    progress: Callable[[MigrationReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MigrationReport:
    """Upcast every outdated event of `store` in place (the raw store, not UpcastingStore)."""
    if not dry_run and not isinstance(store, RewritableStore):
        raise NotRewritable(
            f"the {store.name} store cannot rewrite events yet; "
            "`catgad migrate --dry-run` still reports what would change"
        )
    report = MigrationReport(dry_run)
    after = 0
    while report.stopped is None:
        if should_stop is not None and should_stop():
            report.stopped = "interrupted"
            break
        page = await store.read_all(after=after, limit=max(1, batch))
        if not page:
            break
        todo: list[Envelope] = []
        consumed = 0
        for event in page:
            if limit is not None and report.upcast + report.normalised >= limit:
                report.stopped = "limit"
                break
            consumed += 1
            new = _upcast(event, config, upcasters, report)
            if new is not None:
                todo.append(new)
        if todo and not dry_run:
            assert isinstance(store, RewritableStore)
            written = await store.rewrite(todo)
            if written != len(todo):  # a store breaking its promise: stop before doing more
                raise StoreError(f"rewrite wrote {written} of {len(todo)} events; stopping")
        report.scanned += consumed
        if consumed:
            after = page[consumed - 1].position or after
        report.elapsed = time.monotonic() - report.started
        if progress is not None:
            progress(report)
    report.elapsed = time.monotonic() - report.started
    return report


def _upcast(
    event: Envelope, config: Config, upcasters: Upcasters, report: MigrationReport
) -> Envelope | None:
    """`event` at its newest version when it needs rewriting, else None (counted either way)."""
    event_def = config.events.get(event.type)
    version = event.dataschemaversion or 1
    if event_def is None:
        report.current += 1
        return None
    if version >= event_def.version:
        normalised = _normalised(event, event_def)
        if normalised is None:
            report.current += 1
        else:
            report.normalised += 1
        return normalised
    if not upcasters.outdated(event):
        report.unreachable += 1
        return None
    try:
        new = upcasters.upcast(event)
    except UpcastFailed as exc:
        why = f"upcaster {exc.from_version} -> {exc.from_version + 1} failed: {exc.why}"
        report.failed.append(Failure(event.id, event.type, event.subject or "", why))
        return None
    errors = event_def.validator.errors(new.data)
    if errors:
        first = errors[0]
        why = (
            f"upcast to version {event_def.version}, it breaks the schema at "
            f"{first.pointer or '/'}: {first.message}"
        )
        report.failed.append(Failure(event.id, event.type, event.subject or "", why))
        return None
    report.steps[(event.type, version, event_def.version)] += 1
    report.upcast += 1
    return new  # its numbers normalised by the chain


def _normalised(event: Envelope, event_def: EventDef) -> Envelope | None:
    """The event with its numbers as its (valid) schema declares them, when any differs."""
    if not isinstance(event.data, dict) or not event_def.validator.is_valid(event.data):
        return None  # not this schema's data: nothing it declares can be trusted
    before = orjson.dumps(event.data)  # 5 and 5.0 compare equal; their JSON does not
    data = event_def.validator.normalise(copy.deepcopy(event.data))
    if orjson.dumps(data) == before:
        return None
    return dataclasses.replace(event, data=data)
