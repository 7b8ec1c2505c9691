"""Semantic checks of `projections:`: events and handlers resolve, every operation has a key,
expressions read only variables, event fields and columns that exist, no table is shared."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from catgad.config.cel import CelExpr
from catgad.config.loader import Path, Reporter, did_you_mean
from catgad.projections.model import KEY_COLUMN, ProjectionDef

KEY_VARIABLES = ("data", "event")
FIELD_VARIABLES = ("data", "event", "row")
# What `event.<x>` may read: the envelope's attributes, and the store position.
EVENT_ATTRIBUTES = frozenset(
    "specversion id source type subject time datacontenttype correlationid causationid "
    "streamversion dataschemaversion position".split()
)
_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "json": lambda v: True,
}
Resolves = Callable[[Path, str, str, str], bool]
Properties = Callable[[str], set[str] | None]


def lint_projections(
    data: Mapping[str, Any],
    projections: Mapping[str, ProjectionDef],
    exprs: Mapping[Path, CelExpr],
    reporter: Reporter,
    resolves: Resolves,
    event_fields: Properties,
) -> None:
    """Report every problem of the section. `resolves(path, section, name, what)` checks a
    reference (and reports it); `event_fields(type)` is an event's declared fields, if known."""
    section = data.get("projections")
    if not isinstance(section, dict):
        return
    tables: dict[tuple[str, str], str] = {}
    for name, raw in section.items():
        base: Path = ("projections", name)
        for index, event in enumerate(raw.get("events") or []):
            resolves((*base, "events", index), "events", event, "event")
        if "handler" in raw:
            resolves((*base, "handler"), "handlers", raw["handler"], "handler")
            continue
        projection = projections.get(name)
        if projection is None:
            continue
        check = _Projection(projection, raw, exprs, reporter, resolves, event_fields)
        check.run()
        place = (projection.target.location(), projection.target.table)
        if place in tables:
            reporter.error(
                (*base, "target"),
                f"table {place[1]!r} at {place[0]} is already filled by projection "
                f"{tables[place]!r}; give one of them another `table`",
            )
        tables.setdefault(place, name)


class _Projection:
    def __init__(
        self,
        projection: ProjectionDef,
        raw: dict[str, Any],
        exprs: Mapping[Path, CelExpr],
        reporter: Reporter,
        resolves: Resolves,
        event_fields: Properties,
    ) -> None:
        self.p = projection
        self.raw = raw
        self.exprs = exprs
        self.error = reporter.error
        self.resolves = resolves
        self.event_fields = event_fields
        self.base: Path = ("projections", projection.name)

    def run(self) -> None:
        self._columns()
        listed = self.raw.get("events")
        on = self.raw.get("on") or {}
        known_events = []
        for event, spec in on.items():
            path: Path = (*self.base, "on", event)
            if not self.resolves(path, "events", event, "event"):
                continue
            known_events.append(event)
            if listed is not None and event not in listed:
                self.error(path, f"{event} is mapped but not listed in `events`", at=path)
            items = spec if isinstance(spec, list) else [spec]
            for index, item in enumerate(items):
                self._op((*path, index) if isinstance(spec, list) else path, event, item)
        if "key" in self.raw:
            for event in known_events:
                self._expression((*self.base, "key"), KEY_VARIABLES, event)

    def _columns(self) -> None:
        for name, column in self.p.columns.items():
            path: Path = (*self.base, "columns", name)
            if name == KEY_COLUMN:
                self.error(path, f"{KEY_COLUMN!r} is the row key's column; name this one else")
            if column.index and column.type == "json":
                self.error(path, "a json column cannot be indexed", at=(*path, "index"))
            if column.default is not None and not _TYPE_CHECKS[column.type](column.default):
                self.error(
                    path, f"default {column.default!r} is not of type {column.type}", at=path
                )

    def _op(self, path: Path, event: str, item: dict[str, Any]) -> None:
        kind = next(k for k in ("upsert", "update", "delete") if k in item)
        if "key" not in item and "key" not in self.raw:
            self.error(
                path,
                "missing key: give the projection a `key`, or this operation its own",
                at=(*path, kind),
            )
        if "key" in item:
            self._expression((*path, "key"), KEY_VARIABLES, event)
        if "when" in item:
            self._expression((*path, "when"), FIELD_VARIABLES, event)
        if kind == "delete":
            return
        columns = self.p.columns
        for column in item[kind] or {}:
            field_path: Path = (*path, kind, column)
            if column not in columns:
                hint = did_you_mean(column, columns) or _known("columns", columns)
                self.error((*path, kind), f"unknown column {column!r}{hint}", at=field_path)
            self._expression(field_path, FIELD_VARIABLES, event)

    def _expression(self, path: Path, variables: tuple[str, ...], event: str) -> None:
        expr = self.exprs.get(path)
        if expr is None:  # did not compile: already reported
            return
        for root in sorted(expr.roots - set(variables)):
            hint = did_you_mean(root, variables) or _known("known here", variables)
            self.error(path, f"unknown variable {root!r}{hint}")
        props = self.event_fields(event)
        columns = {KEY_COLUMN, *self.p.columns}
        for ref in sorted(expr.fields, key=str):
            name = ref.path[0]
            if ref.root == "data" and props is not None and name not in props:
                hint = did_you_mean(name, props) or _known(f"{event} has", props)
                self.error(path, f"unknown field {name!r}{hint}")
            elif ref.root == "row" and "row" in variables and name not in columns:
                hint = did_you_mean(name, columns) or _known("columns", columns)
                self.error(path, f"unknown column {name!r}{hint}")
            elif ref.root == "event" and name not in EVENT_ATTRIBUTES:
                hint = did_you_mean(name, EVENT_ATTRIBUTES)
                self.error(path, f"events have no attribute {name!r}{hint}")


def _known(what: str, names: Collection[str]) -> str:
    return f" ({what}: {', '.join(sorted(names))})" if names else f" ({what}: none)"
