"""Turns the schema-valid `projections:` section into ProjectionDefs, compiling their CEL."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, cast, get_args

from catgad.config.cel import CelExpr
from catgad.config.loader import Path
from catgad.config.section import Where
from catgad.handlers.section import HandlerConfig
from catgad.projections.model import (
    DEFAULT_READ_DB,
    ColumnDef,
    ColumnType,
    OnError,
    OpDef,
    OpKind,
    ProjectionDef,
    TargetConfig,
    TargetKind,
)

# What the short forms (`target: redis`) connect to.
DEFAULT_URLS = {
    "postgres": "postgresql://localhost:5432/catgad",
    "redis": "redis://localhost:6379/0",
}
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")
Cel = Callable[[Any, Path], CelExpr | None]
Located = Callable[[Path], Where]
FileAt = Callable[[str, Path], str]


def build_projections(
    raw: Mapping[str, Any],
    handlers: Mapping[str, HandlerConfig],
    cel: Cel,
    where: Located,
    file: FileAt,
) -> dict[str, ProjectionDef]:
    """Every projection of the section; `cel` compiles (and reports) an expression at a path,
    `where` locates a path, `file` resolves a path written in the config."""
    out: dict[str, ProjectionDef] = {}
    for name, spec in raw.items():
        base: Path = ("projections", name)
        out[name] = ProjectionDef(
            name=name,
            target=_target(name, spec, handlers, file),
            events=list(spec.get("events") or spec.get("on") or []),
            key=cel(spec["key"], (*base, "key")) if "key" in spec else None,
            columns=_columns(spec.get("columns") or {}),
            on=_mappings(spec.get("on") or {}, base, cel),
            on_error=cast(OnError, spec.get("on_error", "skip")),
            retries=int(spec.get("retries", 3)),
            batch=int(spec.get("batch", 500)),
            enabled=bool(spec.get("enabled", True)),
            description=spec.get("description"),
            where=where(base),
        )
    return out


def default_table(projection: str) -> str:
    """A projection named `order-list` fills table `order_list`."""
    return _NOT_IDENT.sub("_", projection)


def _target(
    name: str, spec: dict[str, Any], handlers: Mapping[str, HandlerConfig], file: FileAt
) -> TargetConfig:
    if "handler" in spec:
        handler = handlers.get(spec["handler"])
        kind: TargetKind = handler.kind if handler is not None else "webhook"  # lint reports
        return TargetConfig(kind=kind, handler=spec["handler"], table=default_table(name))
    raw = spec.get("target", "sqlite")
    long: dict[str, Any] = {"kind": raw} if isinstance(raw, str) else raw
    kind = cast(TargetKind, long["kind"])
    target = TargetConfig(
        kind=kind,
        url=long.get("url", DEFAULT_URLS.get(kind)),
        table=long.get("table") or default_table(name),
        schema=long.get("schema"),
        options=dict(long.get("options") or {}),
    )
    if "prefix" in long:
        target.prefix = long["prefix"]
    if kind == "sqlite":
        target.url = None
        target.path = file(
            long.get("path", DEFAULT_READ_DB), ("projections", name, "target", "path")
        )
    return target


def _columns(raw: dict[str, Any]) -> dict[str, ColumnDef]:
    columns = {}
    for name, spec in raw.items():
        long: dict[str, Any] = {"type": spec} if isinstance(spec, str) else spec
        column_type = cast(ColumnType, long["type"])
        assert column_type in get_args(ColumnType)
        columns[name] = ColumnDef(
            name, column_type, long.get("default"), bool(long.get("index", False))
        )
    return columns


def _mappings(raw: dict[str, Any], base: Path, cel: Cel) -> dict[str, list[OpDef]]:
    on: dict[str, list[OpDef]] = {}
    for event, spec in raw.items():
        items = spec if isinstance(spec, list) else [spec]
        ops = []
        for index, item in enumerate(items):
            path: Path = (
                (*base, "on", event, index) if isinstance(spec, list) else (*base, "on", event)
            )
            kind: OpKind = next(k for k in ("upsert", "update", "delete") if k in item)
            fields: dict[str, CelExpr] = {}
            if kind != "delete":
                for column, source in (item[kind] or {}).items():
                    expr = cel(source, (*path, kind, column))
                    if expr is not None:
                        fields[column] = expr
            ops.append(
                OpDef(
                    kind=kind,
                    event=event,
                    key=cel(item["key"], (*path, "key")) if "key" in item else None,
                    fields=fields,
                    when=cel(item["when"], (*path, "when")) if "when" in item else None,
                    index=index,
                )
            )
        on[event] = ops
    return on
