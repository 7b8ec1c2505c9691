"""The loaded, checked config: what the rest of catgad runs from.

Built by catgad.config.load_config(); every CEL expression is already compiled
and every name already resolved, so the runtime never re-checks the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from catgad.aggregates.payload import PayloadSchema
from catgad.config.cel import CelExpr
from catgad.processes.model import ProcessDef
from catgad.projections.model import ProjectionDef
from catgad.sagas.model import SagaDef, SagaSettings


@dataclass(frozen=True, slots=True)
class Where:
    """Where a piece of config came from, for error messages."""

    file: str
    line: int
    column: int
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}"


@dataclass(slots=True)
class ServiceConfig:
    name: str = "catgad"
    host: str = "127.0.0.1"
    port: int = 8080
    auth: list[AuthToken] = field(default_factory=list)  # empty: the API is open


SCOPES = ("commands", "read", "approve", "manage")  # what a token may be allowed (SPEC 12)


@dataclass(frozen=True, slots=True)
class AuthToken:
    """`service.auth.tokens[]`: kept as the SHA-256 digest of its secret, never the secret."""

    name: str
    digest: bytes
    scopes: frozenset[str]


@dataclass(slots=True)
class StoreConfig:
    """`store: sqlite` or `store: {kind: sqlite, path: ..., synchronous: full}`."""

    kind: Literal["memory", "sqlite", "postgres", "redis", "nats"] = "sqlite"
    url: str | None = None
    path: str | None = None  # sqlite file; relative paths are relative to the config file
    synchronous: Literal["full", "normal"] = "full"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BusConfig:
    kind: Literal["memory", "nats", "kafka"] = "memory"
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ProjectionSettings:
    """`runtime.projections`: how the daemons sharing a store hand projections over."""

    lease_ttl: float = 10.0  # seconds; a dead holder's projections move within ~4/3 of it
    poll_interval: float = 0.05  # seconds between looks at the store for others' appends


@dataclass(slots=True)
class RuntimeConfig:
    projections: ProjectionSettings = field(default_factory=ProjectionSettings)
    sagas: SagaSettings = field(default_factory=SagaSettings)
    processes: SagaSettings = field(default_factory=SagaSettings)  # the same knobs


@dataclass(slots=True)
class HandlerConfig:
    name: str
    kind: Literal["webhook", "plugin"]
    url: str | None = None
    entry_point: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    where: Where | None = None
    entry_point_where: Where | None = None  # where `entry_point` is written, for plugin errors


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


@dataclass(slots=True)
class GivenEvent:
    type: str
    data: dict[str, Any]
    version: int | None = None  # the schema version a `given` event was stored at
    stream: str | None = None  # a `given` event's stream; None: the scenario's default


@dataclass(slots=True)
class ExpectedRejection:
    """`then: {rejected: {status: 422, message: "..."}}`; message matches as a substring."""

    status: int | None = None
    message: str | None = None


@dataclass(slots=True)
class ExpectedRow:
    """`then: {rows: [...]}`: a projection's row for `key` after the scenario's events: with
    exactly `fields` (`exact`, from `row:`), with at least `fields` (`fields:`), or none
    (`absent`)."""

    projection: str
    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    exact: bool = False
    absent: bool = False
    where: Where | None = None


@dataclass(slots=True)
class Scenario:
    """given events → when command → then events, or a rejection; and/or read-model rows.

    Without a command (`command` None) the given events are stored as they are and only
    `expect_rows` is checked."""

    name: str
    given: list[GivenEvent]
    command: str | None
    data: dict[str, Any]
    expect_events: list[GivenEvent] | None = None
    expect_rejection: ExpectedRejection | None = None
    expect_state: dict[str, Any] | None = None  # optional: fields of the state afterwards
    where: Where | None = None
    reply: dict[str, Any] | None = None  # a stubbed handler reply: {events: [...]} or {error}
    expect_rows: list[ExpectedRow] | None = None


@dataclass(slots=True)
class Config:
    path: str
    version: int = 1
    service: ServiceConfig = field(default_factory=ServiceConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    handlers: dict[str, HandlerConfig] = field(default_factory=dict)
    aggregates: dict[str, AggregateDef] = field(default_factory=dict)
    commands: dict[str, CommandDef] = field(default_factory=dict)
    events: dict[str, EventDef] = field(default_factory=dict)
    tests: list[Scenario] = field(default_factory=list)
    projections: dict[str, ProjectionDef] = field(default_factory=dict)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    sagas: dict[str, SagaDef] = field(default_factory=dict)
    processes: dict[str, ProcessDef] = field(default_factory=dict)
