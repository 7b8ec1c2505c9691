"""The JSON Schema of the `processes:` section, merged into catgad.app.schema."""

from __future__ import annotations

from catgad.config.fragments import IDENT, Schema
from catgad.config.fragments import closed as _closed
from catgad.config.fragments import ref as _ref
from catgad.sagas.schema import DURATION
from catgad.service.model import SCOPES

_STATE_NAME: Schema = {"type": "string", "pattern": IDENT, "description": "a state's name"}
_TRANSITION = _closed(
    "On this event (when `if` holds), go to `goto`, setting instance data with `set`.",
    {
        "event": _ref("typeName", "the event type"),
        "if": _ref("cel", "CEL over process, data and event: the transition applies when true"),
        "goto": _STATE_NAME,
        "set": _ref("fieldMap", "instance data field → CEL over process, data and event"),
    },
    "event",
    "goto",
)
_SEND = _closed(
    "A command sent on entering the state.",
    {
        "command": _ref("typeName", "a command of this service"),
        "data": _ref("fieldMap", "field → CEL over process (its id, state and data)"),
    },
    "command",
)
_STATE = _closed(
    "A state: transitions on events, commands sent on entering it, a durable timer, a human "
    "approval, or the end.",
    {
        "on": {"type": "array", "items": _TRANSITION, "description": "tried in order"},
        "send": {"type": "array", "items": _SEND},
        "after": _closed(
            "A durable timer, scheduled on entering the state and cancelled on leaving it.",
            {"in": DURATION, "goto": _STATE_NAME},
            "in",
            "goto",
        ),
        "approval": _closed(
            "Wait for a person: POST /processes/{name}/{id}/approve or /reject with a token "
            "holding `scope`.",
            {
                "scope": {"enum": list(SCOPES), "default": "approve"},
                "approve": _STATE_NAME,
                "reject": _STATE_NAME,
            },
            "approve",
            "reject",
        ),
        "final": {"type": "boolean", "description": "the instance ends here"},
    },
)

TEST = _closed(
    "A process scenario, run by `catgad test` without a server or waiting: events arriving "
    "(each `after` a time from the start), approvals and time passing; then the state, data "
    "and the commands sent.",
    {
        "name": {"type": "string", "minLength": 1},
        "given": {
            "type": "array",
            "description": "what happens, in order",
            "items": {
                "type": "object",
                "description": "an event ({type, data}), an approval ({approve: comment} or "
                "{reject: comment}), or time passing ({wait: 24h})",
                "properties": {
                    "type": _ref("typeName"),
                    "data": {"type": "object"},
                    "approve": {"type": "string"},
                    "reject": {"type": "string"},
                    "wait": DURATION,
                },
                "additionalProperties": False,
                "minProperties": 1,
            },
        },
        "then": _closed(
            "What must hold at the end.",
            {
                "state": _STATE_NAME,
                "status": {"enum": ["running", "finished"]},
                "data": {"type": "object", "description": "fields of the instance data"},
                "sent": {
                    "type": "array",
                    "items": _ref("typeName"),
                    "description": "the commands sent, in order",
                },
            },
        ),
    },
    "name",
    "given",
    "then",
)

PROCESS = _closed(
    "A process: a state machine over events, one instance per `id`.",
    {
        "description": {"type": "string"},
        "start": {
            "description": "the event type(s) that start an instance",
            "anyOf": [
                _ref("typeName"),
                {"type": "array", "items": _ref("typeName"), "minItems": 1},
            ],
        },
        "id": _ref("cel", "CEL over every event it reads: which instance (data.order_id)"),
        "data": _ref("fieldMap", "instance data set at start: CEL over the start event"),
        "initial": _STATE_NAME,
        "states": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": IDENT, "patternErrorMessage": "a state name"},
            "additionalProperties": _STATE,
        },
        "tests": {"type": "array", "items": TEST, "description": "scenario tests"},
    },
    "start",
    "id",
    "initial",
    "states",
)

SECTION: Schema = {
    "type": "object",
    "description": "Processes (SPEC section 11): state machines with timers and approvals.",
    "propertyNames": {"pattern": IDENT, "patternErrorMessage": "a process name is an identifier"},
    "additionalProperties": PROCESS,
}
