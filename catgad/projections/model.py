"""The loaded `projections:` section: what each read model is built from and where it lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from catgad.config.cel import CelExpr
from catgad.config.section import Where

ColumnType = Literal["string", "integer", "number", "boolean", "json"]
OpKind = Literal["upsert", "update", "delete"]
TargetKind = Literal["sqlite", "postgres", "redis", "webhook", "plugin"]
OnError = Literal["skip", "stop"]

COLUMN_TYPES: tuple[ColumnType, ...] = ("string", "integer", "number", "boolean", "json")
TABLE_KINDS: tuple[TargetKind, ...] = ("sqlite", "postgres", "redis")
HANDLER_KINDS: tuple[TargetKind, ...] = ("webhook", "plugin")
KEY_COLUMN = "key"  # every read-model row has it; a declared column may not use the name
DEFAULT_READ_DB = "read.db"  # a sqlite target without a path: beside the config file
DEFAULT_REDIS_PREFIX = "catgad:read:"


@dataclass(frozen=True, slots=True)
class ColumnDef:
    """A read-model field: its type, the value of a row that never set it, and whether
    `GET /read/{projection}?field=value` may filter on it (an index on every target)."""

    name: str
    type: ColumnType = "string"
    default: Any = None
    index: bool = False


@dataclass(frozen=True, slots=True)
class OpDef:
    """One operation an event causes: upsert (insert or change), update (change an existing
    row only) or delete, on the row named by `key`, when `when` holds."""

    kind: OpKind
    event: str
    key: CelExpr | None  # None: the projection's key (lint reports when neither is given)
    fields: dict[str, CelExpr] = field(default_factory=dict)
    when: CelExpr | None = None
    index: int = 0  # position in the event's list, for messages


@dataclass(slots=True)
class TargetConfig:
    """Where the read model lives. Table kinds name a table (SQL) or a key space (Redis);
    handler kinds name a declared webhook or plugin handler."""

    kind: TargetKind
    path: str | None = None  # sqlite file, absolute (relative ones resolved at load)
    url: str | None = None  # postgres / redis server
    table: str = ""  # SQL table, or the Redis key segment; defaults to the projection name
    schema: str | None = None  # postgres schema (default: the connection's search_path)
    prefix: str = DEFAULT_REDIS_PREFIX  # redis: every key starts with it
    handler: str | None = None  # webhook / plugin: the handler's name
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def has_table(self) -> bool:
        return self.kind in TABLE_KINDS

    def location(self) -> str:
        """Which database / server / handler, for status and messages (no credentials)."""
        if self.kind == "sqlite":
            return f"sqlite:{self.path}"
        if self.kind in ("postgres", "redis"):
            url = self.url or ""
            host = url.split("@")[-1] if "@" in url else url.split("://")[-1]
            return f"{self.kind}://{host}"
        return f"{self.kind}:{self.handler}"


@dataclass(slots=True)
class ProjectionDef:
    name: str
    target: TargetConfig
    events: list[str] = field(default_factory=list)  # types read; others only move the checkpoint
    key: CelExpr | None = None
    columns: dict[str, ColumnDef] = field(default_factory=dict)
    on: dict[str, list[OpDef]] = field(default_factory=dict)
    on_error: OnError = "skip"  # a poison event: dead-letter it and go on, or stop (failed)
    retries: int = 3  # attempts after the first, before an event counts as poison
    batch: int = 500  # events read and applied per transaction
    enabled: bool = True
    description: str | None = None
    where: Where | None = None

    @property
    def reads_rows(self) -> bool:
        """Whether an expression reads `row` (the current row): then rows are fetched first."""
        return any(
            "row" in expr.roots
            for ops in self.on.values()
            for op in ops
            for expr in (*op.fields.values(), *((op.when,) if op.when else ()))
        )

    @property
    def indexed(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.index]

    def defaults(self) -> dict[str, Any]:
        """The fields of a row that was just created, before its operation sets any."""
        return {name: column.default for name, column in self.columns.items()}
