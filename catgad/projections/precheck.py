"""Before a command's events are stored: can every projection that reads them apply them?

A projection's mapping that fails on an event makes that event poison for the
read model (dead-lettered, or the projection stops). What can be known without
the read model is checked before the append instead, and a failure refuses the
command (EventRuleFailed, 422) with nothing stored:

- every operation's key, and its `when` when that does not read `row`;
- every field of an operation that does not read `row` (the same values the
  runner will compute, by the same Mapper).

An operation reading `row` depends on the row as it will be then, which only
the target holds: its fields are left to the runner (its poison handling
applies). Handler projections (webhook, plugin) are user code and not run here.
"""

from __future__ import annotations

from catgad.envelope import Envelope
from catgad.errors import EventRuleFailed
from catgad.model import Config
from catgad.projections.mapping import Mapper, MappingError
from catgad.projections.section import PROJECTIONS


class ProjectionPrecheck:
    """The engine's event check (catgad.engine.commands.EventCheck) for declarative
    projections that are enabled."""

    def __init__(self, config: Config) -> None:
        self._mappers = [
            Mapper(p)
            for p in PROJECTIONS.of(config).values()
            if p.enabled and p.target.handler is None and p.on
        ]
        self._by_type: dict[str, list[Mapper]] = {}
        for mapper in self._mappers:
            for event_type in mapper.projection.on:
                self._by_type.setdefault(event_type, []).append(mapper)

    def __bool__(self) -> bool:
        return bool(self._mappers)

    def __call__(self, command: str, events: list[Envelope]) -> None:
        by_type = self._by_type
        for event in events:
            for mapper in by_type.get(event.type, ()):
                try:
                    if mapper.direct(event) is None:  # reads `row`: keys and plain `when`s
                        mapper.prepare(event)
                except MappingError as exc:
                    # where is projections.<name>.on.<event>[<i>].<column, key or when>
                    part = exc.where.rsplit(".", 1)[-1]
                    raise EventRuleFailed(command, event.type, exc.where, part, exc.why) from None
