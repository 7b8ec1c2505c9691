"""The `aggregates:`, `commands:` and `events:` sections: what the engine runs from.

Their schema fragments (and the shared definitions of an aggregate, a command,
an event and its upcasters), how they are built (CEL compiled, payload schemas
made validators) and their checks: every name resolves, every rule reads only
variables and fields that exist.
"""

from __future__ import annotations

from typing import Any

from catgad.aggregates.lint import lint_aggregates, lint_commands, lint_events
from catgad.aggregates.model import (
    AggregateDef,
    CommandDef,
    Emit,
    EventDef,
    Requirement,
    StateRule,
    UpcastStep,
)
from catgad.aggregates.payload import payload_validator
from catgad.config.fragments import IDENT, Schema, closed, named, one_of_keys, ref, text
from catgad.config.loader import Path
from catgad.config.section import Building, Section

DEFS: Schema = {
    "stateRule": {
        "type": ["object", "null"],
        "description": "How this event changes the state; empty when it changes nothing.",
        "additionalProperties": False,
        "properties": {
            "set": ref("fieldMap", "state field → CEL over state, data and event"),
            "unset": {
                "type": "array",
                "description": "state fields to remove",
                "items": {"type": "string", "pattern": IDENT},
            },
        },
    },
}
DEFS["aggregate"] = closed(
    "An event-sourced stream type: its events rebuild its state.",
    {
        "id": text(
            "The command/event data field naming the instance, e.g. order_id.", pattern=IDENT
        ),
        "stream_prefix": text(
            "Stream ids are <stream_prefix>-<id>; defaults to the aggregate's name.",
            pattern="^[A-Za-z0-9_.]+$",
        ),
        "description": {"type": "string"},
        "initial": {"type": "object", "description": "State of a new instance.", "default": {}},
        "snapshot": closed(
            "Snapshot policy.",
            {"every": {"type": "integer", "minimum": 1, "description": "events between snapshots"}},
            "every",
        ),
        "on": {
            "type": "object",
            "description": "event type → how it changes the state",
            "propertyNames": ref("typeName"),
            "additionalProperties": ref("stateRule"),
        },
    },
    "id",
)

DEFS["command"] = closed(
    "A command: payload schema, target aggregate, and either rules (require/emit) or a handler.",
    {
        "aggregate": ref("typeName", "the aggregate this command acts on"),
        "description": {"type": "string"},
        "schema": ref("payloadSchema"),
        "require": {
            "type": "array",
            "description": "Preconditions, checked in order; the first false one rejects (422).",
            "items": closed(
                "A precondition.",
                {
                    "rule": ref("cel", "boolean CEL over data, state, command and version"),
                    "message": {"type": "string", "description": "the rejection's reason"},
                },
                "rule",
            ),
        },
        "emit": {
            "type": "array",
            "description": "Events appended when every requirement holds.",
            "items": closed(
                "An event to emit.",
                {
                    "event": ref("typeName", "a declared event type"),
                    "data": ref("fieldMap", "event field → CEL over data, state, command"),
                    "when": ref("cel", "emit only when this is true"),
                },
                "event",
            ),
        },
        "handler": ref("typeName", "a handler declared under `handlers`"),
    },
    "aggregate",
    "schema",
    allOf=[
        one_of_keys("emit", "handler", "a command needs either 'emit' rules or a 'handler'"),
        {
            "if": {"required": ["handler"]},
            "then": {
                "not": {"required": ["require"]},
                "errorMessage": "'require' rules go with 'emit'; a handler does its own checks",
            },
        },
    ],
)

DEFS["upcaster"] = closed(
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
        "set": ref("fieldMap", "field → CEL over data (renamed, defaulted) and event"),
        "remove": {
            "type": "array",
            "description": "fields dropped from the data",
            "items": {"type": "string", "pattern": IDENT},
        },
        "handler": ref("typeName", "a plugin handler: (event) -> data at the next version"),
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

DEFS["event"] = closed(
    "An event type.",
    {
        "version": {"type": "integer", "minimum": 1, "default": 1, "description": "schema version"},
        "description": {"type": "string"},
        "schema": ref("payloadSchema"),
        "upcasters": {
            "type": "object",
            "description": "Stored events at an older version are upcast on read: version N → "
            "how its data becomes N+1, one step for each version from 1 to `version` - 1.",
            "propertyNames": {
                "pattern": "^[1-9][0-9]*$",
                "patternErrorMessage": "an upcaster is keyed by the version it upgrades from: "
                "1, 2, ...",
            },
            "additionalProperties": ref("upcaster"),
        },
    },
)


def build_aggregates(raw: Any, ctx: Building) -> dict[str, AggregateDef]:
    return {name: _aggregate(name, spec, ctx) for name, spec in (raw or {}).items()}


def build_commands(raw: Any, ctx: Building) -> dict[str, CommandDef]:
    return {name: _command(name, spec, ctx) for name, spec in (raw or {}).items()}


def build_events(raw: Any, ctx: Building) -> dict[str, EventDef]:
    return {name: _event(name, spec, ctx) for name, spec in (raw or {}).items()}


def _aggregate(name: str, raw: dict[str, Any], ctx: Building) -> AggregateDef:
    base: Path = ("aggregates", name)
    rules = {}
    for event, rule in (raw.get("on") or {}).items():
        rule = rule or {}
        rules[event] = StateRule(
            event=event,
            set=ctx.cel_map(rule.get("set"), (*base, "on", event, "set")),
            unset=list(rule.get("unset") or []),
        )
    return AggregateDef(
        name=name,
        id_field=raw["id"],
        stream_prefix=raw.get("stream_prefix", name),
        initial=dict(raw.get("initial") or {}),
        on=rules,
        snapshot_every=(raw.get("snapshot") or {}).get("every"),
        where=ctx.where(base),
    )


def _command(name: str, raw: dict[str, Any], ctx: Building) -> CommandDef:
    base: Path = ("commands", name)
    command = CommandDef(
        name=name,
        aggregate=raw["aggregate"],
        schema=raw["schema"],
        validator=payload_validator(raw["schema"]),
        handler=raw.get("handler"),
        description=raw.get("description"),
        where=ctx.where(base),
    )
    for index, item in enumerate(raw.get("require") or []):
        rule = ctx.cel(item["rule"], (*base, "require", index, "rule"))
        if rule is not None:
            message = item.get("message") or f"requirement failed: {rule.source}"
            command.require.append(Requirement(rule, message, index))
    for index, item in enumerate(raw.get("emit") or []):
        path: Path = (*base, "emit", index)
        when = ctx.cel(item["when"], (*path, "when")) if "when" in item else None
        data = ctx.cel_map(item.get("data"), (*path, "data"))
        command.emit.append(Emit(item["event"], data, when))
    return command


def _event(name: str, raw: dict[str, Any], ctx: Building) -> EventDef:
    schema = raw.get("schema", {"type": "object"})
    return EventDef(
        name=name,
        schema=schema,
        validator=payload_validator(schema),
        version=raw.get("version", 1),
        description=raw.get("description"),
        where=ctx.where(("events", name)),
        upcasters={
            int(key): _upcaster(name, key, step or {}, ctx)
            for key, step in (raw.get("upcasters") or {}).items()
        },
    )


def _upcaster(event: str, key: str, raw: dict[str, Any], ctx: Building) -> UpcastStep:
    path: Path = ("events", event, "upcasters", key)
    return UpcastStep(
        from_version=int(key),
        rename=dict(raw.get("rename") or {}),
        defaults=dict(raw.get("defaults") or {}),
        set=ctx.cel_map(raw.get("set"), (*path, "set")),
        remove=list(raw.get("remove") or []),
        handler=raw.get("handler"),
        where=ctx.where(path),
    )


AGGREGATES = Section(
    "aggregates",
    named("Stream types and their state.", ref("aggregate"), "Aggregates"),
    build_aggregates,
    dict,
    lint=lint_aggregates,
    defs=DEFS,
)
COMMANDS = Section(
    "commands",
    named("Commands the service accepts.", ref("command"), "Commands"),
    build_commands,
    dict,
    lint=lint_commands,
    payloads=True,
)
EVENTS = Section(
    "events",
    named("Event types.", ref("event"), "Events"),
    build_events,
    dict,
    lint=lint_events,
    payloads=True,
)
