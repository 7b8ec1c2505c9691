"""The JSON Schema of the `sagas:` section, merged into catgad.app.schema."""

from __future__ import annotations

from catgad.config.fragments import IDENT, Schema
from catgad.config.fragments import closed as _closed
from catgad.config.fragments import ref as _ref
from catgad.reactors.durations import PATTERN as DURATION_PATTERN

DURATION: Schema = {
    "description": "A duration: 30s, 15m, 24h, 2d, 500ms, ISO 8601 (PT24H), or seconds.",
    "anyOf": [
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "patternErrorMessage": "expected a duration: 30s, 10m, 24h, 2d, 500ms, PT10M, "
            "or a number of seconds",
        },
        {"type": "number", "minimum": 0},
    ],
}
_TYPES: Schema = {
    "description": "an event type, or a list of them",
    "anyOf": [_ref("typeName"), {"type": "array", "items": _ref("typeName"), "minItems": 1}],
}
_DATA = _ref("fieldMap", "field → CEL over `input`, `id` and `steps.<name>`")

_STEP = _closed(
    "One step: a command of this service, sent with `data`; it succeeds when the command "
    "is accepted (and, with `await`, when the success event arrives).",
    {
        "name": {"type": "string", "pattern": IDENT, "description": "the step's name"},
        "command": _ref("typeName", "the command sent"),
        "data": _DATA,
        "await": _closed(
            "The step's outcome arrives later, as an event.",
            {
                "success": _TYPES,
                "failure": _TYPES,
                "match": _ref(
                    "cel",
                    "CEL over input, id, steps, data and event: whether an event answers this "
                    "instance (default: it carries the saga's correlationid)",
                ),
                "timeout": DURATION,
            },
            "success",
        ),
        "compensate": {
            "const": "none",
            "description": "`none`: the step's events need no compensation (validate "
            "otherwise asks for one per event type it can produce)",
        },
    },
    "name",
    "command",
)

_COMPENSATION = _closed(
    "The command that undoes one event type: `event` (the event undone) is readable.",
    {
        "command": _ref("typeName", "the compensating command"),
        "data": _ref("fieldMap", "field → CEL over `input`, `id`, `steps` and `event`"),
    },
    "command",
)

_OUTCOME: Schema = {
    "description": "The step's outcome: accepted (its command runs for real, the default), "
    "rejected (a 409), failing (503 until the retries are spent), or a handler's reply.",
    "anyOf": [
        {"enum": ["accepted", "rejected", "failing"]},
        _closed("A rejection with its reason.", {"rejected": {"type": "string"}}, "rejected"),
        _closed(
            "The reply of the step's handler (no webhook is called).",
            {
                "reply": {
                    "type": "object",
                    "properties": {
                        "events": {"type": "array", "items": _ref("message")},
                        "error": {"type": "string", "minLength": 1},
                    },
                    "additionalProperties": False,
                }
            },
            "reply",
        ),
    ],
}

TEST = _closed(
    "A saga scenario, run by `catgad test` without a server: start data, each step's "
    "outcome, events that arrive and time that passes; then the status and the commands sent.",
    {
        "name": {"type": "string", "minLength": 1},
        "given": {"type": "array", "items": _ref("message"), "description": "past events"},
        "start": {"type": "object", "description": "the start data"},
        "steps": {
            "type": "object",
            "description": "step name → its outcome (default: accepted)",
            "additionalProperties": _OUTCOME,
        },
        "events": {
            "type": "array",
            "description": "events that arrive, `after` this long from the start",
            "items": _closed(
                "An event that arrives (it carries the saga's correlation).",
                {
                    "type": _ref("typeName"),
                    "data": {"type": "object", "default": {}},
                    "after": DURATION,
                },
                "type",
            ),
        },
        "elapsed": DURATION,
        "then": _closed(
            "What must hold at the end.",
            {
                "status": {
                    "enum": ["running", "completed", "compensating", "compensated", "failed"]
                },
                "sent": {
                    "type": "array",
                    "items": _ref("typeName"),
                    "description": "the commands sent, steps and compensations, in order",
                },
                "reason": {"type": "string"},
            },
        ),
    },
    "name",
    "start",
    "then",
)

SAGA = _closed(
    "A saga: ordered steps, undone in reverse order through `compensate` when one fails.",
    {
        "description": {"type": "string"},
        "start": _closed(
            "What starts an instance: an event of this service, and/or POST /sagas/{name}.",
            {
                "event": _ref("typeName", "an event type that starts an instance"),
                "id": _ref("cel", "CEL over `data` (the start data): the instance id"),
            },
        ),
        "schema": _ref("payloadSchema", "JSON Schema of the start data (400 on mismatch)"),
        "timeout": DURATION,
        "retry": _closed(
            "Per step and compensation: how 503s and time-outs are retried.",
            {
                "attempts": {"type": "integer", "minimum": 1, "default": 3},
                "backoff": DURATION,
            },
        ),
        "steps": {"type": "array", "minItems": 1, "items": _STEP},
        "compensate": {
            "type": "object",
            "description": "event type → the command that undoes it",
            "additionalProperties": _COMPENSATION,
        },
        "tests": {"type": "array", "items": TEST, "description": "scenario tests"},
    },
    "steps",
)

SECTION: Schema = {
    "type": "object",
    "description": "Sagas (SPEC section 10): steps, and compensation when one fails.",
    "propertyNames": {"pattern": IDENT, "patternErrorMessage": "a saga name is an identifier"},
    "additionalProperties": SAGA,
}

RUNTIME: Schema = _closed(
    "How the daemons sharing a store hand the driving of sagas over (each saga's instances "
    "are driven by the holder of its lease; every daemon lists them).",
    {
        "lease_ttl": {
            "type": "number",
            "minimum": 0.1,
            "maximum": 3600,
            "default": 10,
            "description": "seconds a saga's lease lasts unrenewed (renewed every third of it): "
            "a dead daemon's sagas are driven on by another within about 4/3 of this",
        },
        "poll_interval": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 60,
            "default": 0.2,
            "description": "seconds between looks at the store for events other daemons "
            "appended (this daemon's own wake its sagas at once); below lease_ttl",
        },
    },
)
