"""The JSON Schema of the `projections:` section, merged into catgad.app.schema.

Kept beside the projections it describes; it refers to the main schema's
shared definitions (`cel`, `fieldMap`, `typeName`) by `$ref`.
"""

from __future__ import annotations

from catgad.config.fragments import Schema
from catgad.config.fragments import closed as _closed
from catgad.config.fragments import ref as _ref
from catgad.projections.model import COLUMN_TYPES

IDENT = "^[A-Za-z_][A-Za-z0-9_]*$"
ENV_REF = r"^\$\{[^}]+\}$"
TARGET_KINDS = ["sqlite", "postgres", "redis"]
# `target.options` each table kind reads (catgad.projections.targets.factory)
TARGET_OPTIONS: dict[str, Schema] = {
    "sqlite": {
        "busy_timeout_ms": {"type": "integer", "minimum": 0, "description": "ms a write waits"}
    },
    "postgres": {
        "pool_max": {"type": "integer", "minimum": 1, "description": "most connections"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds per call"},
    },
    "redis": {
        "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds per call"}
    },
}


_TEXT: Schema = {"type": "string", "minLength": 1}
_KEY = _ref("cel", "CEL over `data` and `event`: the row's key (a string or an integer)")
_WHEN = _ref("cel", "apply only when this is true (CEL over data, event and row)")

_OP = _closed(
    "One change to a row: `upsert` (create or change), `update` (change an existing row "
    "only) or `delete`, with each field a CEL expression over `data`, `event` and `row` "
    "(the row as it is before this event, with column defaults when it does not exist).",
    {
        "upsert": _ref("fieldMap", "column → CEL; creates the row when missing"),
        "update": _ref("fieldMap", "column → CEL; nothing happens when the row is missing"),
        "delete": {"const": True, "description": "remove the row"},
        "key": _KEY,
        "when": _WHEN,
    },
    oneOf=[{"required": [op]} for op in ("upsert", "update", "delete")],
    errorMessage="an operation needs exactly one of 'upsert', 'update' or 'delete'",
)

_COLUMN_TYPE: Schema = {"enum": list(COLUMN_TYPES), "description": "the column's type"}
_COLUMN: Schema = {
    "description": "A column: its type (short form), or {type, default, index}.",
    "anyOf": [
        _COLUMN_TYPE,
        _closed(
            "A column, long form.",
            {
                "type": _COLUMN_TYPE,
                "default": {"description": "value of a new row that does not set it"},
                "index": {
                    "type": "boolean",
                    "default": False,
                    "description": "queryable with GET /read/{projection}?column=value",
                },
            },
            "type",
        ),
    ],
}

_TARGET_LONG = _closed(
    "Read-model target, long form.",
    {
        "kind": {"enum": TARGET_KINDS, "description": "sqlite, postgres or redis"},
        "path": {**_TEXT, "description": "sqlite: database file, relative to this config file"},
        "url": {**_TEXT, "description": "postgres / redis: server URL"},
        "table": {
            **_TEXT,
            "pattern": IDENT,
            "patternErrorMessage": "a table name has only letters, digits and _",
            "description": "SQL table (or Redis key segment); defaults to the projection name",
        },
        "schema": {**_TEXT, "pattern": IDENT, "description": "postgres: schema of the table"},
        "prefix": {"type": "string", "description": "redis: prefix of every key"},
        "options": {"type": "object", "description": "target-specific settings"},
    },
    "kind",
    allOf=[
        {
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {"properties": {"options": _closed(f"{kind} target options", known)}},
        }
        for kind, known in TARGET_OPTIONS.items()
    ],
)

_TARGET: Schema = {
    "title": "Projection target",
    "description": "Where the read model lives: sqlite (the default), postgres or redis. "
    "The short form uses the local default address.",
    "anyOf": [
        {"enum": TARGET_KINDS, "description": "target kind, with its defaults"},
        _TARGET_LONG,
    ],
}

PROJECTION: Schema = _closed(
    "A read model: the events it reads and either declarative mappings into a table/hash "
    "(`target`, `key`, `columns`, `on`) or a `handler` (webhook or plugin) given each event.",
    {
        "description": {"type": "string"},
        "events": {
            "type": "array",
            "minItems": 1,
            "items": _ref("typeName"),
            "description": "event types it reads; defaults to the keys of `on`",
        },
        "target": _TARGET,
        "key": _KEY,
        "columns": {
            "type": "object",
            "description": "the read model's fields; tables and columns are created from them",
            "propertyNames": {"pattern": IDENT, "patternErrorMessage": "expected a column name"},
            "additionalProperties": _COLUMN,
        },
        "on": {
            "type": "object",
            "description": "event type → its operation, or a list of them",
            "propertyNames": _ref("typeName"),
            "additionalProperties": {"anyOf": [_OP, {"type": "array", "items": _OP}]},
        },
        "handler": _ref("typeName", "a webhook or plugin handler declared under `handlers`"),
        "on_error": {
            "enum": ["skip", "stop"],
            "default": "skip",
            "description": "a poison event: record it as a dead letter and go on (skip), "
            "or stop the projection and report it failed (stop)",
        },
        "retries": {
            "type": "integer",
            "minimum": 0,
            "default": 3,
            "description": "retries, with backoff, before an event counts as poison",
        },
        "batch": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100000,
            "default": 500,
            "description": "events applied per transaction",
        },
        "enabled": {
            "type": ["boolean", "string"],
            "pattern": ENV_REF,  # editors see `${VAR:-true}` before it is substituted
            "patternErrorMessage": "expected true or false",
            "default": True,
            "description": "false: not run (it still appears in GET /projections)",
        },
    },
    allOf=[
        {
            "oneOf": [{"required": ["on"]}, {"required": ["handler"]}],
            "errorMessage": "a projection needs either 'on' mappings or a 'handler'",
        },
        {
            "if": {"required": ["handler"]},
            "then": {
                "allOf": [
                    {"not": {"required": [key]}, "errorMessage": f"'{key}' goes with 'on'"}
                    for key in ("target", "key", "columns")
                ],
                "required": ["events"],
            },
        },
    ],
)

SECTION: Schema = {
    "type": "object",
    "title": "Projections",
    "description": "Read models built from the events, queried at GET /read/{projection}.",
    "propertyNames": _ref("typeName"),
    "additionalProperties": _ref("projection"),
}

DEFS: Schema = {"projection": PROJECTION}
