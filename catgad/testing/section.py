"""The `tests:` section: scenario tests of commands, rules and read models, run by
`catgad test` with no server (catgad.testing.scenarios)."""

from __future__ import annotations

from typing import Any

from catgad.aggregates.lint import known, state_fields
from catgad.config.fragments import Schema, closed, one_of_keys, ref, text
from catgad.config.loader import Path, did_you_mean
from catgad.config.section import Building, Linting, Section
from catgad.projections.model import KEY_COLUMN
from catgad.projections.section import PROJECTIONS
from catgad.testing.model import ExpectedRejection, ExpectedRow, GivenEvent, Scenario

DEFS: Schema = {
    "pastEvent": {
        "type": "object",
        "description": "An event already in the stream: its type, data and the schema "
        "version it was stored at (default: the event type's current version).",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": ref("typeName", "event type"),
            "data": {"type": "object", "description": "payload", "default": {}},
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "stored at this schema version: read through the upcasters",
            },
            "stream": text(
                "The stream it is in; default: the command's stream, else its aggregate's "
                "(the aggregate whose `on` rules name it and whose id field is in the data)."
            ),
        },
    },
}
_THEN = closed(
    "What should happen: these events or a rejection, and/or this state afterwards.",
    {
        "events": {"type": "array", "items": ref("message"), "description": "events appended"},
        "rejected": closed(
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
            "items": ref("expectedRow"),
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

DEFS["expectedRow"] = closed(
    "A read-model row expected after the scenario's events: all its columns (`row`), some "
    "of them (`fields`), or no row at all (`absent`).",
    {
        "projection": ref(
            "typeName",
            "a projection with a table target (sqlite, postgres, "
            "redis); its mapping runs into a scratch SQLite table",
        ),
        "key": {"type": ["string", "integer"], "description": "the row's key"},
        "row": {"type": "object", "description": "every column of the row (key optional)"},
        "fields": {"type": "object", "description": "these columns of the row; others any"},
        "absent": {"const": True, "description": "there is no row with this key"},
    },
    "projection",
    "key",
    oneOf=[{"required": [k]} for k in ("row", "fields", "absent")],
    errorMessage="an expected row needs exactly one of 'row', 'fields' or 'absent'",
)

_SCENARIO = closed(
    "A scenario test: given events, when a command, then events or a rejection; or given "
    "events, then read-model rows.",
    {
        "name": text("What the scenario shows."),
        "given": {"type": "array", "items": ref("pastEvent"), "description": "past events"},
        "when": closed(
            "The command under test.",
            {
                "command": ref("typeName", "a declared command"),
                "data": {"type": "object", "default": {}},
                "reply": closed(
                    "The reply of the command's handler, stubbed: no webhook is called.",
                    {
                        "events": {"type": "array", "items": ref("message")},
                        "error": text("a business rejection (409)"),
                    },
                    allOf=[one_of_keys("events", "error", "a reply has 'events' or an 'error'")],
                ),
            },
            "command",
        ),
        "then": _THEN,
    },
    "name",
    "then",
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


SCHEMA: Schema = {"type": "array", "description": "Scenario tests.", "items": _SCENARIO}


def build_tests(raw: Any, ctx: Building) -> list[Scenario]:
    # None: an item pruned after a schema error
    return [_scenario(index, item, ctx) for index, item in enumerate(raw or []) if item is not None]


def _scenario(index: int, raw: dict[str, Any], ctx: Building) -> Scenario:
    then = raw["then"]
    rejected = then.get("rejected")
    when = raw.get("when") or {}
    rows = then.get("rows")
    return Scenario(
        name=raw["name"],
        given=_messages(raw.get("given")),
        command=when.get("command"),
        data=when.get("data") or {},
        expect_events=_messages(then["events"]) if "events" in then else None,
        expect_rejection=None
        if rejected is None
        else ExpectedRejection(rejected.get("status"), rejected.get("message")),
        expect_state=then.get("state"),
        where=ctx.where(("tests", index)),
        reply=when.get("reply"),
        expect_rows=None
        if rows is None
        else [_expected_row(index, i, row, ctx) for i, row in enumerate(rows)],
    )


def _expected_row(index: int, at: int, raw: dict[str, Any], ctx: Building) -> ExpectedRow:
    exact = "row" in raw
    return ExpectedRow(
        projection=raw["projection"],
        key=str(raw["key"]),
        fields=dict(raw["row"] if exact else raw.get("fields") or {}),
        exact=exact,
        absent=bool(raw.get("absent", False)),
        where=ctx.where(("tests", index, "then", "rows", at)),
    )


def _messages(raw: list[dict[str, Any]] | None) -> list[GivenEvent]:
    return [
        GivenEvent(item["type"], item.get("data") or {}, item.get("version"), item.get("stream"))
        for item in raw or []
    ]


def lint_tests(raw: Any, built: list[Scenario], ctx: Linting) -> None:
    _Tests(ctx)._tests()


class _Tests:
    def __init__(self, ctx: Linting) -> None:
        self.ctx = ctx
        self.error = ctx.error
        self.data = ctx.data

    def _tests(self) -> None:
        tests = self.data.get("tests")
        seen: dict[str, int] = {}
        for index, raw in enumerate(tests if isinstance(tests, list) else []):
            if raw is None:
                continue
            base: Path = ("tests", index)
            if raw["name"] in seen:
                first = self.ctx.reporter.positions.value(("tests", seen[raw["name"]], "name"))
                self.error((*base, "name"), f"duplicate test name (first at {first})")
            seen.setdefault(raw["name"], index)
            when = raw.get("when") or {}
            command = when.get("command")
            path: Path = (*base, "when", "command")
            state: set[str] | None = None
            if command is not None and self.ctx.resolves(path, "commands", command, "command"):
                target = self.ctx.raw("commands").get(command)  # None: schema-rejected
                state = None if target is None else state_fields(self.ctx, target["aggregate"])
            then = raw["then"]
            reply = when.get("reply")
            if reply is not None and command is not None:
                self._stubbed(base, command, reply)
            for i, row in enumerate(then.get("rows") or []):
                self._expected_row((*base, "then", "rows", i), row)
            for where, items in (("given", raw.get("given")), ("then", then.get("events"))):
                prefix: Path = (*base, where) if where == "given" else (*base, "then", "events")
                for i, item in enumerate(items or []):
                    if self.ctx.resolves((*prefix, i, "type"), "events", item["type"], "event"):
                        self._stored_version((*prefix, i), item)
            self._expected_state((*base, "then", "state"), then.get("state"), state)

    def _expected_row(self, path: Path, row: dict[str, Any]) -> None:
        """A row expected of a projection that keeps rows, in columns it has."""
        name = row["projection"]
        if not self.ctx.resolves((*path, "projection"), "projections", name, "projection"):
            return
        projection = PROJECTIONS.of(self.ctx).get(name)  # None: schema-rejected
        if projection is None:
            return
        if not projection.target.has_table:
            self.error(
                (*path, "projection"),
                f"projection {name!r} gives its events to handler "
                f"{projection.target.handler!r}: it has no rows to check",
            )
            return
        columns = {KEY_COLUMN, *projection.columns}
        for part in ("row", "fields"):
            for column in sorted(row.get(part) or {}):
                if column not in columns:
                    hint = did_you_mean(column, columns) or known(f"{name} has", columns)
                    self.error(
                        (*path, part), f"unknown column {column!r}{hint}", at=(*path, part, column)
                    )

    def _stored_version(self, path: Path, item: dict[str, Any]) -> None:
        """A past event's version is one its type has had."""
        stored = item.get("version")
        event = self.ctx.raw("events").get(item["type"])
        if stored is None or event is None:
            return
        current = event.get("version", 1)
        if stored > current:
            self.error(
                (*path, "version"),
                f"{item['type']} is at version {current}; a past event cannot be newer",
            )

    def _stubbed(self, base: Path, command: str, reply: dict[str, Any]) -> None:
        """A stubbed reply goes with a handler command, and names declared events."""
        path: Path = (*base, "when", "reply")
        target = self.ctx.raw("commands").get(command)
        if target is not None and "handler" not in target:
            self.error(path, f"'reply' stubs a handler, but {command} has rules", at=path)
        for i, item in enumerate(reply.get("events") or []):
            self.ctx.resolves((*path, "events", i, "type"), "events", item["type"], "event")

    def _expected_state(self, path: Path, expected: Any, state: set[str] | None) -> None:
        if not isinstance(expected, dict) or state is None:
            return
        for key in sorted(expected):
            if key not in state:
                hint = did_you_mean(key, state) or known("state has", state)
                self.error(path, f"unknown state field {key!r}{hint}", at=(*path, key))


TESTS = Section("tests", SCHEMA, build_tests, list, lint=lint_tests, defs=DEFS)
