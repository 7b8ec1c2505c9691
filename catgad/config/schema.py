"""The JSON Schema of a catgad config, as Python data: the one source of truth for its shape.

`python -m catgad.config.schema` writes it to catgad/schema/catgad.schema.json (package
data: `catgad schema` prints it; published at its $id), which editors load through
yaml-language-server (`# yaml-language-server: $schema=...`).
Besides standard keywords it carries `errorMessage` / `patternErrorMessage`,
which that editor shows and catgad.config uses for its own messages.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from catgad.processes import schema as process_schema
from catgad.projections import schema as projection_schema
from catgad.sagas import schema as saga_schema

SCHEMA_ID = "https://catgad.dev/schemas/catgad.schema.json"
META_SCHEMA = "https://json-schema.org/draft/2020-12/schema"

STORE_KINDS = ["memory", "sqlite", "postgres", "redis", "nats"]
BUS_KINDS = ["memory", "nats", "kafka"]
IDENT = "^[A-Za-z_][A-Za-z0-9_]*$"
TYPE_NAME = "^[A-Za-z][A-Za-z0-9_.-]*$"  # dots allowed for CloudEvents-style types
LISTEN = r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"
# Editors see `${VAR}` unexpanded; catgad checks values after substitution. Patterns
# of values likely to come from the environment accept a reference so editors do too.
ENV_REF = r"\$\{[^}]+\}"


def _or_env(pattern: str) -> str:
    return f"(?:{pattern})|{ENV_REF}"


Schema = dict[str, Any]


def _text(description: str, **extra: Any) -> Schema:
    return {"type": "string", "minLength": 1, "description": description, **extra}


def _ref(name: str, description: str | None = None) -> Schema:
    schema: Schema = {"$ref": f"#/$defs/{name}"}
    if description:
        schema["description"] = description
    return schema


def _closed(
    description: str, properties: Schema, required: tuple[str, ...] = (), **extra: Any
) -> Schema:
    """A mapping whose unknown keys are errors, so a typo cannot hide."""
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = list(required)
    schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def _named(description: str, item: Schema, title: str) -> Schema:
    """A mapping of user-chosen names to definitions (commands, events, ...)."""
    return {
        "type": "object",
        "title": title,
        "description": description,
        "propertyNames": _ref("typeName"),
        "additionalProperties": item,
    }


def _kinded(title: str, description: str, kinds: list[str], default: str, long: Schema) -> Schema:
    """`store: redis` (short form) or `store: {kind: redis, url: ...}` (long form)."""
    short = {"type": "string", "enum": kinds, "description": f"{title} kind, with its defaults"}
    kind = {"enum": kinds, "default": default, "description": f"{title} kind"}
    long["properties"] = {"kind": kind, **long["properties"]}
    return {"title": title, "description": description, "default": default, "anyOf": [short, long]}


def _one_of_keys(first: str, second: str, message: str) -> Schema:
    return {"oneOf": [{"required": [first]}, {"required": [second]}], "errorMessage": message}


_DEFS: Schema = {
    "typeName": {
        "type": "string",
        "pattern": TYPE_NAME,
        "patternErrorMessage": "a name starts with a letter and has only letters, digits, _ . -",
    },
    "cel": {
        "title": "CEL expression",
        "type": ["string", "number", "boolean"],
        "minLength": 1,
        "description": "A CEL (Common Expression Language) expression, compiled at load. "
        "Quote string literals inside it: status: \"'paid'\".",
    },
    "fieldMap": {
        "type": "object",
        "description": "field name → CEL expression computing its value",
        "propertyNames": {"pattern": IDENT, "patternErrorMessage": "expected a field name"},
        "additionalProperties": _ref("cel"),
    },
    "payloadSchema": {
        "$ref": META_SCHEMA,
        "type": "object",
        "description": "JSON Schema (draft 2020-12) of the payload; its `properties` are "
        "the fields that rules may read.",
    },
    "message": {
        "type": "object",
        "description": "An event or command instance: its type and data.",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": _ref("typeName", "event type"),
            "data": {"type": "object", "description": "payload", "default": {}},
        },
    },
    "pastEvent": {
        "type": "object",
        "description": "An event already in the stream: its type, data and the schema "
        "version it was stored at (default: the event type's current version).",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": _ref("typeName", "event type"),
            "data": {"type": "object", "description": "payload", "default": {}},
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "stored at this schema version: read through the upcasters",
            },
            "stream": _text(
                "The stream it is in; default: the command's stream, else its aggregate's "
                "(the aggregate whose `on` rules name it and whose id field is in the data)."
            ),
        },
    },
    "stateRule": {
        "type": ["object", "null"],
        "description": "How this event changes the state; empty when it changes nothing.",
        "additionalProperties": False,
        "properties": {
            "set": _ref("fieldMap", "state field → CEL over state, data and event"),
            "unset": {
                "type": "array",
                "description": "state fields to remove",
                "items": {"type": "string", "pattern": IDENT},
            },
        },
    },
}

_DEFS["aggregate"] = _closed(
    "An event-sourced stream type: its events rebuild its state.",
    {
        "id": _text(
            "The command/event data field naming the instance, e.g. order_id.", pattern=IDENT
        ),
        "stream_prefix": _text(
            "Stream ids are <stream_prefix>-<id>; defaults to the aggregate's name.",
            pattern="^[A-Za-z0-9_.]+$",
        ),
        "description": {"type": "string"},
        "initial": {"type": "object", "description": "State of a new instance.", "default": {}},
        "snapshot": _closed(
            "Snapshot policy.",
            {"every": {"type": "integer", "minimum": 1, "description": "events between snapshots"}},
            ("every",),
        ),
        "on": {
            "type": "object",
            "description": "event type → how it changes the state",
            "propertyNames": _ref("typeName"),
            "additionalProperties": _ref("stateRule"),
        },
    },
    ("id",),
)

_DEFS["command"] = _closed(
    "A command: payload schema, target aggregate, and either rules (require/emit) or a handler.",
    {
        "aggregate": _ref("typeName", "the aggregate this command acts on"),
        "description": {"type": "string"},
        "schema": _ref("payloadSchema"),
        "require": {
            "type": "array",
            "description": "Preconditions, checked in order; the first false one rejects (422).",
            "items": _closed(
                "A precondition.",
                {
                    "rule": _ref("cel", "boolean CEL over data, state, command and version"),
                    "message": {"type": "string", "description": "the rejection's reason"},
                },
                ("rule",),
            ),
        },
        "emit": {
            "type": "array",
            "description": "Events appended when every requirement holds.",
            "items": _closed(
                "An event to emit.",
                {
                    "event": _ref("typeName", "a declared event type"),
                    "data": _ref("fieldMap", "event field → CEL over data, state, command"),
                    "when": _ref("cel", "emit only when this is true"),
                },
                ("event",),
            ),
        },
        "handler": _ref("typeName", "a handler declared under `handlers`"),
    },
    ("aggregate", "schema"),
    allOf=[
        _one_of_keys("emit", "handler", "a command needs either 'emit' rules or a 'handler'"),
        {
            "if": {"required": ["handler"]},
            "then": {
                "not": {"required": ["require"]},
                "errorMessage": "'require' rules go with 'emit'; a handler does its own checks",
            },
        },
    ],
)

_DEFS["upcaster"] = _closed(
    "How data at version N becomes version N+1: rename, then defaults, then set, then "
    "remove; or a plugin handler that does the whole step. `{}` keeps the data as it is.",
    {
        "rename": {
            "type": "object",
            "description": "old field name → new field name",
            "propertyNames": {"pattern": IDENT, "patternErrorMessage": "expected a field name"},
            "additionalProperties": {"type": "string", "pattern": IDENT},
        },
        "defaults": {
            "type": "object",
            "description": "field → value, for fields the old event does not have",
            "propertyNames": {"pattern": IDENT, "patternErrorMessage": "expected a field name"},
        },
        "set": _ref("fieldMap", "field → CEL over data (renamed, defaulted) and event"),
        "remove": {
            "type": "array",
            "description": "fields dropped from the data",
            "items": {"type": "string", "pattern": IDENT},
        },
        "handler": _ref("typeName", "a plugin handler: (event) -> data at the next version"),
        "description": {"type": "string"},
    },
    allOf=[
        {
            "if": {"required": ["handler"]},
            "then": {
                "not": {
                    "anyOf": [{"required": [k]} for k in ("rename", "defaults", "set", "remove")]
                },
                "errorMessage": "a handler upcaster does the whole step; "
                "leave out rename, defaults, set and remove",
            },
        }
    ],
)

_DEFS["event"] = _closed(
    "An event type.",
    {
        "version": {"type": "integer", "minimum": 1, "default": 1, "description": "schema version"},
        "description": {"type": "string"},
        "schema": _ref("payloadSchema"),
        "upcasters": {
            "type": "object",
            "description": "Stored events at an older version are upcast on read: version N → "
            "how its data becomes N+1, one step for each version from 1 to `version` - 1.",
            "propertyNames": {
                "pattern": "^[1-9][0-9]*$",
                "patternErrorMessage": "an upcaster is keyed by the version it upgrades from: "
                "1, 2, ...",
            },
            "additionalProperties": _ref("upcaster"),
        },
    },
)

_WEBHOOK = _closed(
    "User code behind an HTTP endpoint (Standard Webhooks signatures).",
    {
        "kind": {"const": "webhook"},
        "url": _text(
            "Where commands are POSTed.",
            pattern=_or_env("^https?://"),
            patternErrorMessage="expected an http:// or https:// URL",
        ),
        "secret": {
            "description": "Standard Webhooks signing secret: whsec_<base64> (the official "
            "libraries' form) or any other string (its UTF-8 bytes are the key); use ${VAR}. "
            "A list while rotating: each request carries one signature per secret.",
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            ],
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds per attempt, all of it: connect, send, wait, read (default "
            "5). With retries a call ends within (retries + 1) x timeout plus the backoffs.",
        },
        "retries": {
            "type": "integer",
            "minimum": 0,
            "description": "Attempts after a failed one (default 2).",
        },
        "backoff": _closed(
            "Delay before retry n: a random time up to min(max, initial x 2^n) (full jitter).",
            {
                "initial": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
                "max": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
            },
        ),
        "circuit_breaker": _closed(
            "Stop calling for a while after repeated failures.",
            {
                "failures": {"type": "integer", "minimum": 1, "description": "failures to open"},
                "reset_after": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
            },
        ),
        "description": {"type": "string"},
    },
    ("kind", "url"),
)

_PLUGIN = _closed(
    "A Python function found through an entry point in group catgad.handlers.",
    {
        "kind": {"const": "plugin"},
        "entry_point": _text("The entry point's name."),
        "blocking": {
            "type": "boolean",
            "default": False,
            "description": "The function blocks (does I/O): run it on a worker thread.",
        },
        "description": {"type": "string"},
    },
    ("kind", "entry_point"),
)

_STORE = _kinded(
    "Event store",
    "Where events are kept: memory, sqlite (the default), postgres, redis or nats "
    "(JetStream). The short form uses the local default address.",
    STORE_KINDS,
    "sqlite",
    _closed(
        "Event store, long form.",
        {
            "url": _text("Server URL (postgres, redis, nats)."),
            "path": _text("SQLite file, relative to this config file.", default="catgad.db"),
            "synchronous": {
                "enum": ["full", "normal"],
                "default": "full",
                "description": "SQLite: full syncs every commit to disk; normal is faster "
                "but a power loss may drop the last commits.",
            },
            "options": {"type": "object", "description": "backend-specific settings"},
        },
    ),
)


def _positive(description: str, default: float, kind: str = "number") -> Schema:
    """A positive number, or a `${VAR}` an editor sees unexpanded (checked after substitution)."""
    number = {"type": kind, "exclusiveMinimum": 0}
    env = {"type": "string", "pattern": f"^{ENV_REF}$"}
    return {"anyOf": [number, env], "default": default, "description": description}


# The keys every bus kind reads; the rest of `options` is the backend's own (prefix,
# partitions, timeouts, ...: catgad.bus.nats / kafka / memory OPTIONS), checked at load.
_BUS_COMMANDS = _closed(
    "How commands travel when several daemons share a broker (nats, kafka): each is sent "
    "to the topic below, keyed by its stream id, and served by one member of the group at "
    "a time, in order per stream.",
    {
        "topic": _text("Topic (subject) the commands are sent to.", default="commands"),
        "group": _text(
            "Consumer group of the daemons serving them; default `<service name>-commands`."
        ),
        "timeout": _positive(
            "Seconds to wait for a command's reply before answering 503; also the bound on "
            "running one command.",
            30.0,
        ),
        "route": {
            "enum": ["auto", "bus", "local"],
            "default": "auto",
            "description": "auto: over the bus when it is a broker (nats, kafka); bus: always "
            "over the bus; local: run every command in the daemon that received it.",
        },
    },
)

_BUS_RELAY = _closed(
    "The outbox relay: publishes the store's events to the bus, in store order, while "
    "holding the service's relay lease (one daemon at a time).",
    {
        "topic": _text("Topic the events are published to.", default="events"),
        "batch": _positive("Events published between two checkpoints.", 500, "integer"),
        "lease_ttl": _positive("Seconds a relay lease lasts without renewal.", 10.0),
        "poll_interval": _positive("Seconds between looks for other daemons' appends.", 0.2),
        "first_backoff": _positive("Seconds before the first retry of a failed publish.", 0.05),
        "max_backoff": _positive("Longest pause in seconds between publish retries.", 5.0),
        "stop_timeout": _positive("Seconds a shutdown waits for the batch in hand.", 10.0),
    },
)

_BUS = _kinded(
    "Bus",
    "How events are published: memory (in-process, the default), nats or kafka.",
    BUS_KINDS,
    "memory",
    _closed(
        "Bus, long form.",
        {
            "url": _text("Server URL (nats) or bootstrap servers (kafka)."),
            "options": {
                "type": "object",
                "description": "subjects/topics, partitions, groups; `commands` and `relay` "
                "for every kind, the rest per backend",
                "properties": {"commands": _BUS_COMMANDS, "relay": _BUS_RELAY},
            },
        },
    ),
)

_THEN = _closed(
    "What should happen: these events or a rejection, and/or this state afterwards.",
    {
        "events": {"type": "array", "items": _ref("message"), "description": "events appended"},
        "rejected": _closed(
            "The command is refused.",
            {
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "message": {"type": "string", "description": "expected in the reason"},
            },
        ),
        "state": {"type": "object", "description": "expected fields of the state afterwards"},
        "rows": {
            "type": "array",
            "minItems": 1,
            "description": "Rows of read models afterwards: each projection's real mapping, "
            "run on the events (given, and the command's), into a scratch table.",
            "items": _ref("expectedRow"),
        },
    },
    allOf=[
        {
            "anyOf": [{"required": [key]} for key in ("events", "rejected", "state", "rows")],
            "errorMessage": "'then' needs 'events', 'rejected', 'state' or 'rows'",
        },
        {
            "not": {"required": ["events", "rejected"]},
            "errorMessage": "'then' expects events or a rejection, not both",
        },
    ],
)

_DEFS["expectedRow"] = _closed(
    "A read-model row expected after the scenario's events: all its columns (`row`), some "
    "of them (`fields`), or no row at all (`absent`).",
    {
        "projection": _ref(
            "typeName",
            "a projection with a table target (sqlite, postgres, "
            "redis); its mapping runs into a scratch SQLite table",
        ),
        "key": {"type": ["string", "integer"], "description": "the row's key"},
        "row": {"type": "object", "description": "every column of the row (key optional)"},
        "fields": {"type": "object", "description": "these columns of the row; others any"},
        "absent": {"const": True, "description": "there is no row with this key"},
    },
    ("projection", "key"),
    oneOf=[{"required": [k]} for k in ("row", "fields", "absent")],
    errorMessage="an expected row needs exactly one of 'row', 'fields' or 'absent'",
)

_SCENARIO = _closed(
    "A scenario test: given events, when a command, then events or a rejection; or given "
    "events, then read-model rows.",
    {
        "name": _text("What the scenario shows."),
        "given": {"type": "array", "items": _ref("pastEvent"), "description": "past events"},
        "when": _closed(
            "The command under test.",
            {
                "command": _ref("typeName", "a declared command"),
                "data": {"type": "object", "default": {}},
                "reply": _closed(
                    "The reply of the command's handler, stubbed: no webhook is called.",
                    {
                        "events": {"type": "array", "items": _ref("message")},
                        "error": _text("a business rejection (409)"),
                    },
                    allOf=[_one_of_keys("events", "error", "a reply has 'events' or an 'error'")],
                ),
            },
            ("command",),
        ),
        "then": _THEN,
    },
    ("name", "then"),
    allOf=[
        {
            "if": {"not": {"required": ["when"]}},
            "then": {
                "properties": {
                    "then": {
                        "anyOf": [{"required": ["rows"]}],
                        "not": {"anyOf": [{"required": [k]} for k in ("events", "rejected")]},
                        "errorMessage": "without 'when' (a command), 'then' checks 'rows' "
                        "(and 'state' not at all)",
                    }
                }
            },
        },
        {
            "if": {"not": {"required": ["when"]}},
            "then": {
                "properties": {
                    "then": {
                        "not": {"required": ["state"]},
                        "errorMessage": "'state' is an aggregate's after a command: give 'when'",
                    }
                }
            },
        },
    ],
)


SCHEMA: Schema = {
    "$schema": META_SCHEMA,
    "$id": SCHEMA_ID,
    "title": "catgad config",
    "description": "A catgad service: CQRS / event sourcing configured by one YAML file.",
    "type": "object",
    "required": ["catgad"],
    "properties": {
        "catgad": {
            "const": 1,
            "description": "Config format version; must be 1.",
            "errorMessage": "expected 1, the config format version",
        },
        "include": {
            "type": "array",
            "description": "Files merged into this one, relative to it.",
            "items": {"type": "string", "minLength": 1},
        },
        "service": _closed(
            "The service's name, HTTP address and access tokens.",
            {
                "name": _text("Used as the CloudEvents source.", pattern=_or_env(TYPE_NAME)),
                "listen": _text(
                    "HTTP address, host:port.",
                    default="127.0.0.1:8080",
                    pattern=_or_env(LISTEN),
                    patternErrorMessage="expected host:port, e.g. 127.0.0.1:8080",
                ),
                "auth": _closed(
                    "Bearer tokens and their scopes (SPEC section 12). Without it the API is "
                    "open, and `catgad run` listens on loopback only unless --insecure.",
                    {
                        "tokens": {
                            "type": "array",
                            "minItems": 1,
                            "items": _closed(
                                "A token: who holds it, its secret and what it may do.",
                                {
                                    "name": _text("who holds it; named in 403s, never the secret"),
                                    "secret": _text(
                                        "the bearer secret, e.g. ${FRONTEND_TOKEN}, or its "
                                        "digest `sha256:<64 hex>` so the config holds no plaintext"
                                    ),
                                    "scopes": {
                                        "type": "array",
                                        "minItems": 1,
                                        "uniqueItems": True,
                                        "items": {
                                            "enum": ["commands", "read", "approve", "manage"]
                                        },
                                    },
                                },
                                ("name", "secret", "scopes"),
                            ),
                        }
                    },
                    ("tokens",),
                ),
            },
        ),
        "store": _STORE,
        "bus": _BUS,
        "handlers": _named(
            "Named endpoints of user code.", {"anyOf": [_WEBHOOK, _PLUGIN]}, "Handlers"
        ),
        "aggregates": _named("Stream types and their state.", _ref("aggregate"), "Aggregates"),
        "commands": _named("Commands the service accepts.", _ref("command"), "Commands"),
        "events": _named("Event types.", _ref("event"), "Events"),
        "tests": {"type": "array", "description": "Scenario tests.", "items": _SCENARIO},
        "projections": projection_schema.SECTION,
        "runtime": _closed(
            "How the daemon runs its background work.",
            {
                "projections": projection_schema.RUNTIME,
                "sagas": saga_schema.RUNTIME,
                "processes": {
                    **saga_schema.RUNTIME,
                    "description": "How the daemons sharing a store hand the driving of "
                    "processes over (timers, events, commands: the holder of each process's "
                    "lease); the same knobs as runtime.sagas.",
                },
            },
        ),
        "sagas": saga_schema.SECTION,
        "processes": process_schema.SECTION,
    },
    "patternProperties": {"^x-": {"description": "Free space, e.g. for YAML anchors; ignored."}},
    "additionalProperties": False,
    "$defs": {**_DEFS, **projection_schema.DEFS},
}


def render() -> str:
    """The schema file's exact text."""
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"


def default_path() -> Path:
    return Path(__file__).resolve().parents[1] / "schema" / "catgad.schema.json"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else default_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
