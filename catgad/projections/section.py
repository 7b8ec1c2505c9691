"""The `projections:` section (and `runtime.projections`), gathered by catgad.app."""

from __future__ import annotations

from typing import Any

from catgad.config.fragments import properties
from catgad.config.section import Building, Linting, Section
from catgad.consumer.settings import LeasedSettings, build_leased, leased_schema
from catgad.handlers.section import HANDLERS
from catgad.projections import schema
from catgad.projections.build import build_projections
from catgad.projections.lint import lint_projections
from catgad.projections.model import ProjectionDef

DEFAULTS = LeasedSettings(lease_ttl=10.0, poll_interval=0.05, linger=0.02)


class Projections(dict[str, ProjectionDef]):
    """The read models by name, and how daemons hand them over (`runtime.projections`)."""

    settings: LeasedSettings = DEFAULTS


def _build(raw: Any, ctx: Building) -> Projections:
    built = Projections(
        build_projections(raw or {}, HANDLERS.of(ctx), ctx.cel, ctx.where, ctx.file)
    )
    built.settings = build_leased(ctx, "projections", DEFAULTS)
    return built


def _lint(raw: Any, built: Projections, ctx: Linting) -> None:
    lint_projections(
        ctx.data,
        built,
        ctx.exprs,
        ctx.reporter,
        ctx.resolves,
        lambda event: properties(_event_schema(ctx, event)),
    )


def _event_schema(ctx: Linting, event: str) -> dict[str, Any] | None:
    raw = ctx.raw("events").get(event)
    return None if raw is None else raw.get("schema", {})


PROJECTIONS = Section(
    "projections",
    schema.SECTION,
    _build,
    Projections,
    lint=_lint,
    runtime=leased_schema(
        "How the daemons sharing a store hand projections over (each is applied by the "
        "holder of its lease).",
        "a projection",
        DEFAULTS,
    ),
    defs=schema.DEFS,
)
