"""Semantic checks the JSON Schema cannot express: every name resolves, every rule reads
only variables and fields that exist.

Runs on the pruned document (definitions the schema rejected are left out but
still count as declared, see Broken) and on the CEL expressions build compiled.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from catgad.config.build import Built
from catgad.config.cel import CelExpr
from catgad.config.loader import Path, Reporter, did_you_mean
from catgad.handlers.signing import SecretError, secret_key
from catgad.processes.lint import lint_processes
from catgad.projections.lint import lint_projections
from catgad.projections.model import KEY_COLUMN
from catgad.sagas.lint import lint_sagas

COMMAND_VARIABLES = ("data", "state", "command", "version")  # in require / emit / when
RULE_VARIABLES = ("state", "data", "event")  # in an aggregate's `on` rules
UPCAST_VARIABLES = ("data", "event")  # in an upcaster's `set`


@dataclass
class Broken:
    """Definitions the schema rejected: references to them are not reported again."""

    sections: set[str] = field(default_factory=set)  # whole sections of the wrong shape
    names: dict[str, set[str]] = field(default_factory=dict)  # section -> rejected names


def lint(data: dict[str, Any], built: Built, broken: Broken, reporter: Reporter) -> None:
    """Report every semantic problem of the document."""
    _Lint(data, built, broken, reporter).run()


def properties(schema: Any) -> set[str] | None:
    """The fields a payload schema declares; None when it does not list them."""
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return set(schema["properties"])
    return None


def _known(what: str, names: Collection[str]) -> str:
    return f" ({what}: {', '.join(sorted(names))})" if names else f" ({what}: none)"


class _Lint:
    def __init__(self, data: dict[str, Any], built: Built, broken: Broken, reporter: Reporter):
        self.data = data
        self.exprs = built.exprs
        self.config = built.config
        self.broken = broken
        self.reporter = reporter
        self.error = reporter.error

    def run(self) -> None:
        for name, raw in self._section("aggregates").items():
            self._aggregate(name, raw)
        for name, raw in self._section("commands").items():
            self._command(name, raw)
        for name, raw in self._section("events").items():
            self._upcasters(name, raw)
        for name, raw in self._section("handlers").items():
            self._secrets(name, raw)
        self._tests()
        lint_projections(
            self.data, self.config, self.exprs, self.reporter, self._resolves,
            lambda event: properties(self._event_schema(event)),
        )  # fmt: skip
        lint_sagas(self.data, self.exprs, self.reporter, self._resolves, self._schema, self._emits)
        lint_processes(self.data, self.exprs, self.reporter, self._resolves, self._schema)

    def _schema(self, section: str, name: str) -> dict[str, Any] | None:
        raw = self._section(section).get(name)
        return raw.get("schema") if isinstance(raw, dict) else None

    def _emits(self, command: str) -> list[str] | None:
        """The event types a rule command emits; None for a handler's (it decides)."""
        raw = self._section("commands").get(command)
        if not isinstance(raw, dict) or "handler" in raw:
            return None
        return [e["event"] for e in raw.get("emit") or [] if isinstance(e, dict) and "event" in e]

    def _section(self, section: str) -> dict[str, Any]:
        value = self.data.get(section)
        return value if isinstance(value, dict) else {}

    def _resolves(self, path: Path, section: str, name: str, what: str) -> bool:
        """Whether `name` is declared in `section`; reports it when not."""
        declared = self._section(section)
        if name in declared or section in self.broken.sections:
            return True
        if name in self.broken.names.get(section, ()):
            return True
        self.error(path, f"unknown {what} {name!r}{did_you_mean(name, declared)}")
        return False

    def _state_fields(self, aggregate: str) -> set[str] | None:
        """Keys of `initial` and of every rule's `set`; None when the aggregate is unknown."""
        raw = self._section("aggregates").get(aggregate)
        if raw is None:
            return None
        fields = set(raw.get("initial") or {})
        for rule in (raw.get("on") or {}).values():
            fields.update((rule or {}).get("set") or {})
        return fields

    def _event_schema(self, event: str) -> dict[str, Any] | None:
        raw = self._section("events").get(event)
        return None if raw is None else raw.get("schema", {})

    def _aggregate(self, name: str, raw: dict[str, Any]) -> None:
        state = self._state_fields(name)
        for event, rule in (raw.get("on") or {}).items():
            path: Path = ("aggregates", name, "on", event)
            if not self._resolves(path, "events", event, "event"):
                continue
            props = properties(self._event_schema(event))
            for key in (rule or {}).get("set") or {}:
                self._expression((*path, "set", key), RULE_VARIABLES, props, event, state, name)
            for index, unset in enumerate((rule or {}).get("unset") or []):
                if state is not None and unset not in state:
                    self.error((*path, "unset", index), self._no_state(unset, state, name))

    def _command(self, name: str, raw: dict[str, Any]) -> None:
        base: Path = ("commands", name)
        aggregate = raw["aggregate"]
        state: set[str] | None = None
        if self._resolves((*base, "aggregate"), "aggregates", aggregate, "aggregate"):
            state = self._state_fields(aggregate)
            self._id_field(base, raw["schema"], aggregate)
        if "handler" in raw:
            self._resolves((*base, "handler"), "handlers", raw["handler"], "handler")
        props = properties(raw["schema"])
        check = (COMMAND_VARIABLES, props, name, state, aggregate)
        for index in range(len(raw.get("require") or [])):
            self._expression((*base, "require", index, "rule"), *check)
        for index, emit in enumerate(raw.get("emit") or []):
            path: Path = (*base, "emit", index)
            if "when" in emit:
                self._expression((*path, "when"), *check)
            for key in emit.get("data") or {}:
                self._expression((*path, "data", key), *check)
            if self._resolves((*path, "event"), "events", emit["event"], "event"):
                self._emitted(path, emit, self._event_schema(emit["event"]))

    def _secrets(self, name: str, raw: dict[str, Any]) -> None:
        secret = raw.get("secret")
        listed = secret if isinstance(secret, list) else [secret]
        for index, value in enumerate(listed):
            if not isinstance(value, str):
                continue
            try:
                secret_key(value)
            except SecretError as exc:
                path: Path = ("handlers", name, "secret")
                self.error(path if isinstance(secret, str) else (*path, index), str(exc))

    def _upcasters(self, name: str, raw: dict[str, Any]) -> None:
        """A chain with no gaps from version 1 to the current one; plugin steps only."""
        steps = raw.get("upcasters")
        if not steps:
            return
        base: Path = ("events", name, "upcasters")
        version = raw.get("version", 1)
        for key in steps:
            if int(key) >= version:
                self.error(
                    (*base, key),
                    f"{name} is at version {version}, so its upcasters go from 1 to {version - 1}"
                    if version > 1
                    else f"{name} is at version 1: there is nothing to upcast to",
                    at=(*base, key),
                )
        for missing in range(1, version):
            if str(missing) not in steps:
                self.error(
                    base,
                    f"missing upcaster {missing} -> {missing + 1}: events stored at version "
                    f"{missing} could not be read as version {version} ({{}} keeps the data)",
                )
        for key, step in steps.items():
            path: Path = (*base, key)
            handler = (step or {}).get("handler")
            if handler is not None and self._resolves(
                (*path, "handler"), "handlers", handler, "handler"
            ):
                kind = (self._section("handlers").get(handler) or {}).get("kind")
                if kind not in (None, "plugin"):
                    self.error(
                        (*path, "handler"),
                        f"upcasters run on every read, so only a plugin can be one; "
                        f"{handler!r} is a {kind}",
                    )
            for field_name in (step or {}).get("set") or {}:
                expr_path: Path = (*path, "set", field_name)
                self._expression(expr_path, UPCAST_VARIABLES, None, name, None, "")

    def _id_field(self, base: Path, schema: dict[str, Any], aggregate: str) -> None:
        id_field = self._section("aggregates").get(aggregate, {}).get("id")
        if id_field is None:
            return
        where: Path = (*base, "schema")
        if id_field not in (properties(schema) or ()):
            message = f"the {aggregate} id field {id_field!r} must be a property of this schema"
        elif id_field not in (schema.get("required") or ()):
            message = f"the {aggregate} id field {id_field!r} must be required by this schema"
        else:
            return
        self.error(where, message, at=where)

    def _emitted(self, path: Path, emit: dict[str, Any], schema: dict[str, Any] | None) -> None:
        """The fields an emit sets against the event's schema: none unknown, none missing."""
        if schema is None:
            return
        event = emit["event"]
        sent = emit.get("data") or {}
        props = properties(schema)
        if props is not None:
            for key in sent:
                if key not in props:
                    hint = did_you_mean(key, props) or _known(f"{event} has", props)
                    self.error(
                        (*path, "data"),
                        f"{event} has no field {key!r}{hint}",
                        at=(*path, "data", key),
                    )
        for key in schema.get("required") or ():
            if key not in sent:
                at: Path = (*path, "data") if "data" in emit else (*path, "event")
                self.error(path, f"missing field {key!r}, required by {event}'s schema", at=at)

    def _expression(
        self,
        path: Path,
        variables: tuple[str, ...],
        props: set[str] | None,
        owner: str,
        state: set[str] | None,
        aggregate: str,
    ) -> None:
        """Variables and fields a CEL expression reads must exist where it runs."""
        expr: CelExpr | None = self.exprs.get(path)
        if expr is None:  # did not compile: already reported
            return
        for root in sorted(expr.roots - set(variables)):
            hint = did_you_mean(root, variables) or _known("known here", variables)
            self.error(path, f"unknown variable {root!r}{hint}")
        for ref in sorted(expr.fields, key=str):
            name = ref.path[0]
            if ref.root == "data" and props is not None and name not in props:
                hint = did_you_mean(name, props) or _known(f"{owner} has", props)
                self.error(path, f"unknown field {name!r}{hint}")
            elif ref.root == "state" and state is not None and name not in state:
                self.error(path, self._no_state(name, state, aggregate))

    @staticmethod
    def _no_state(name: str, state: set[str], aggregate: str) -> str:
        hint = did_you_mean(name, state) or _known(f"{aggregate} state has", state)
        return f"unknown state field {name!r}{hint}"

    def _tests(self) -> None:
        tests = self.data.get("tests")
        seen: dict[str, int] = {}
        for index, raw in enumerate(tests if isinstance(tests, list) else []):
            if raw is None:
                continue
            base: Path = ("tests", index)
            if raw["name"] in seen:
                first = self.reporter.positions.value(("tests", seen[raw["name"]], "name"))
                self.error((*base, "name"), f"duplicate test name (first at {first})")
            seen.setdefault(raw["name"], index)
            when = raw.get("when") or {}
            command = when.get("command")
            path: Path = (*base, "when", "command")
            state: set[str] | None = None
            if command is not None and self._resolves(path, "commands", command, "command"):
                target = self._section("commands").get(command)  # None: schema-rejected
                state = None if target is None else self._state_fields(target["aggregate"])
            then = raw["then"]
            reply = when.get("reply")
            if reply is not None and command is not None:
                self._stubbed(base, command, reply)
            for i, row in enumerate(then.get("rows") or []):
                self._expected_row((*base, "then", "rows", i), row)
            for where, items in (("given", raw.get("given")), ("then", then.get("events"))):
                prefix: Path = (*base, where) if where == "given" else (*base, "then", "events")
                for i, item in enumerate(items or []):
                    if self._resolves((*prefix, i, "type"), "events", item["type"], "event"):
                        self._stored_version((*prefix, i), item)
            self._expected_state((*base, "then", "state"), then.get("state"), state)

    def _expected_row(self, path: Path, row: dict[str, Any]) -> None:
        """A row expected of a projection that keeps rows, in columns it has."""
        name = row["projection"]
        if not self._resolves((*path, "projection"), "projections", name, "projection"):
            return
        projection = self.config.projections.get(name)  # None: schema-rejected
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
                    hint = did_you_mean(column, columns) or _known(f"{name} has", columns)
                    self.error(
                        (*path, part), f"unknown column {column!r}{hint}", at=(*path, part, column)
                    )

    def _stored_version(self, path: Path, item: dict[str, Any]) -> None:
        """A past event's version is one its type has had."""
        stored = item.get("version")
        event = self._section("events").get(item["type"])
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
        target = self._section("commands").get(command)
        if target is not None and "handler" not in target:
            self.error(path, f"'reply' stubs a handler, but {command} has rules", at=path)
        for i, item in enumerate(reply.get("events") or []):
            self._resolves((*path, "events", i, "type"), "events", item["type"], "event")

    def _expected_state(self, path: Path, expected: Any, state: set[str] | None) -> None:
        if not isinstance(expected, dict) or state is None:
            return
        for key in sorted(expected):
            if key not in state:
                hint = did_you_mean(key, state) or _known("state has", state)
                self.error(path, f"unknown state field {key!r}{hint}", at=(*path, key))
