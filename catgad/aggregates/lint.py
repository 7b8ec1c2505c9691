"""Checks of `aggregates:`, `commands:` and `events:` the JSON Schema cannot express: every
name resolves, every rule reads only variables and fields that exist."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from catgad.config.cel import CelExpr
from catgad.config.fragments import properties
from catgad.config.loader import Path, did_you_mean
from catgad.config.section import Linting

COMMAND_VARIABLES = ("data", "state", "command", "version")  # in require / emit / when
RULE_VARIABLES = ("state", "data", "event")  # in an aggregate's `on` rules
UPCAST_VARIABLES = ("data", "event")  # in an upcaster's `set`


def lint_aggregates(raw: Any, built: Any, ctx: Linting) -> None:
    check = Checks(ctx)
    for name, spec in ctx.raw("aggregates").items():
        check._aggregate(name, spec)


def lint_commands(raw: Any, built: Any, ctx: Linting) -> None:
    check = Checks(ctx)
    for name, spec in ctx.raw("commands").items():
        check._command(name, spec)


def lint_events(raw: Any, built: Any, ctx: Linting) -> None:
    check = Checks(ctx)
    for name, spec in ctx.raw("events").items():
        check._upcasters(name, spec)


def state_fields(ctx: Linting, aggregate: str) -> set[str] | None:
    """Keys of `initial` and of every rule's `set`; None when the aggregate is unknown."""
    return Checks(ctx)._state_fields(aggregate)


def known(what: str, names: Collection[str]) -> str:
    return f" ({what}: {', '.join(sorted(names))})" if names else f" ({what}: none)"


class Checks:
    def __init__(self, ctx: Linting) -> None:
        self.ctx = ctx
        self.error = ctx.error
        self.exprs = ctx.exprs

    def _state_fields(self, aggregate: str) -> set[str] | None:
        """Keys of `initial` and of every rule's `set`; None when the aggregate is unknown."""
        raw = self.ctx.raw("aggregates").get(aggregate)
        if raw is None:
            return None
        fields = set(raw.get("initial") or {})
        for rule in (raw.get("on") or {}).values():
            fields.update((rule or {}).get("set") or {})
        return fields

    def _event_schema(self, event: str) -> dict[str, Any] | None:
        raw = self.ctx.raw("events").get(event)
        return None if raw is None else raw.get("schema", {})

    def _aggregate(self, name: str, raw: dict[str, Any]) -> None:
        state = self._state_fields(name)
        for event, rule in (raw.get("on") or {}).items():
            path: Path = ("aggregates", name, "on", event)
            if not self.ctx.resolves(path, "events", event, "event"):
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
        if self.ctx.resolves((*base, "aggregate"), "aggregates", aggregate, "aggregate"):
            state = self._state_fields(aggregate)
            self._id_field(base, raw["schema"], aggregate)
        if "handler" in raw:
            self.ctx.resolves((*base, "handler"), "handlers", raw["handler"], "handler")
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
            if self.ctx.resolves((*path, "event"), "events", emit["event"], "event"):
                self._emitted(path, emit, self._event_schema(emit["event"]))

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
            if handler is not None and self.ctx.resolves(
                (*path, "handler"), "handlers", handler, "handler"
            ):
                kind = (self.ctx.raw("handlers").get(handler) or {}).get("kind")
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
        id_field = self.ctx.raw("aggregates").get(aggregate, {}).get("id")
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
                    hint = did_you_mean(key, props) or known(f"{event} has", props)
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
            hint = did_you_mean(root, variables) or known("known here", variables)
            self.error(path, f"unknown variable {root!r}{hint}")
        for ref in sorted(expr.fields, key=str):
            name = ref.path[0]
            if ref.root == "data" and props is not None and name not in props:
                hint = did_you_mean(name, props) or known(f"{owner} has", props)
                self.error(path, f"unknown field {name!r}{hint}")
            elif ref.root == "state" and state is not None and name not in state:
                self.error(path, self._no_state(name, state, aggregate))

    @staticmethod
    def _no_state(name: str, state: set[str], aggregate: str) -> str:
        hint = did_you_mean(name, state) or known(f"{aggregate} state has", state)
        return f"unknown state field {name!r}{hint}"
