"""The aggregates, commands and events as configured: what the engine runs from.

Built by the sections in catgad.aggregates.section; every CEL expression is
already compiled and every name resolved, so the runtime never re-checks the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catgad.aggregates.payload import PayloadSchema
from catgad.config.cel import CelExpr
from catgad.config.section import Where


@dataclass(slots=True)
class StateRule:
    """How one event type changes an aggregate's state: each `set` field is a CEL expression
    over `state`, `data` and `event`; `unset` removes fields."""

    event: str
    set: dict[str, CelExpr] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)


@dataclass(slots=True)
class AggregateDef:
    name: str
    id_field: str  # the command/event data field that names the instance, e.g. order_id
    stream_prefix: str  # stream id is f"{stream_prefix}-{id}", e.g. Order-o1
    initial: dict[str, Any] = field(default_factory=dict)
    on: dict[str, StateRule] = field(default_factory=dict)
    snapshot_every: int | None = None  # take a snapshot every N events; None = never
    where: Where | None = None

    def stream_id(self, instance_id: str) -> str:
        return f"{self.stream_prefix}-{instance_id}"


@dataclass(slots=True)
class Requirement:
    rule: CelExpr
    message: str
    index: int


@dataclass(slots=True)
class Emit:
    event: str
    data: dict[str, CelExpr]
    when: CelExpr | None = None


@dataclass(slots=True)
class CommandDef:
    name: str
    aggregate: str
    schema: dict[str, Any]
    validator: PayloadSchema
    require: list[Requirement] = field(default_factory=list)
    emit: list[Emit] = field(default_factory=list)
    handler: str | None = None  # a declared handler name instead of require/emit rules
    description: str | None = None
    where: Where | None = None


@dataclass(slots=True)
class UpcastStep:
    """How an event's data at `from_version` becomes its data at from_version + 1.

    Declarative steps apply `rename`, then `defaults` (fields still missing),
    then `set` (CEL over `data`, as renamed and defaulted, and `event`), then
    `remove`; a `handler` step hands the whole event to a plugin instead.
    """

    from_version: int
    rename: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    set: dict[str, CelExpr] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    handler: str | None = None
    where: Where | None = None


@dataclass(slots=True)
class EventDef:
    name: str
    schema: dict[str, Any]
    validator: PayloadSchema
    version: int = 1
    description: str | None = None
    where: Where | None = None
    upcasters: dict[int, UpcastStep] = field(default_factory=dict)  # by from_version
