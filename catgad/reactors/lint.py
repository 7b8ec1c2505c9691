"""Checks every reactor's section shares: the data a reactor sends with a command fits the
command's schema, and the names it lists are told apart from what exists."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from catgad.config.cel import CelExpr
from catgad.config.loader import Path, did_you_mean

Report = Callable[..., None]  # reporter.error(path, message, at=...)


def fields_of(schema: Any) -> set[str] | None:
    """The fields a payload schema declares; None when it does not list them."""
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return set(schema["properties"])
    return None


def listing(what: str, names: Collection[str]) -> str:
    return f" ({what}: {', '.join(sorted(names))})" if names else f" ({what}: none)"


def fits_command(
    error: Report,
    schema: dict[str, Any],
    path: Path,
    raw: dict[str, Any],
    command: str,
    data: dict[str, Any],
) -> None:
    """`raw` (a step, a compensation, a command sent on entering a state) sends `command` this
    `data`: no field the command's closed schema lacks, every required one given."""
    fields = fields_of(schema)
    for field in data:
        if (
            fields is not None
            and field not in fields
            and schema.get("additionalProperties") is False
        ):
            hint = did_you_mean(field, fields) or listing(f"{command} has", fields)
            where: Path = (*path, "data", field)
            error(where, f"{command} has no field {field!r}{hint}", at=where)
    missing = [f for f in schema.get("required") or [] if f not in data]
    if missing:
        given = "data" in raw
        message = f"{command} requires {', '.join(map(repr, missing))}, " + (
            "which `data` does not give" if given else "but there is no `data`"
        )
        error(
            (*path, "data") if given else path,
            message,
            at=(*path, "data") if given else (*path, "command"),
        )


def unknown_variables(error: Report, path: Path, expr: CelExpr, variables: tuple[str, ...]) -> None:
    """Report each variable `expr` reads that is not one of `variables`."""
    for root in sorted(expr.roots - set(variables)):
        hint = did_you_mean(root, variables) or listing("known here", variables)
        error(path, f"unknown variable {root!r}{hint}")
