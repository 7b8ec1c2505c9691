"""The `handlers:` section: named endpoints of user code, webhooks or plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from catgad.config.fragments import Schema, closed, named, or_env, text
from catgad.config.loader import Path
from catgad.config.section import Building, Linting, Section, Where
from catgad.handlers.signing import SecretError, secret_key

_KEYS = ("kind", "url", "entry_point", "description")


@dataclass(slots=True)
class HandlerConfig:
    name: str
    kind: Literal["webhook", "plugin"]
    url: str | None = None
    entry_point: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    where: Where | None = None
    entry_point_where: Where | None = None  # where `entry_point` is written, for plugin errors


WEBHOOK = closed(
    "User code behind an HTTP endpoint (Standard Webhooks signatures).",
    {
        "kind": {"const": "webhook"},
        "url": text(
            "Where commands are POSTed.",
            pattern=or_env("^https?://"),
            patternErrorMessage="expected an http:// or https:// URL",
        ),
        "secret": {
            "description": "Standard Webhooks signing secret: whsec_<base64> (the official "
            "libraries' form) or any other string (its UTF-8 bytes are the key); use ${VAR}. "
            "A list while rotating: each request carries one signature per secret.",
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            ],
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds per attempt, all of it: connect, send, wait, read (default "
            "5). With retries a call ends within (retries + 1) x timeout plus the backoffs.",
        },
        "retries": {
            "type": "integer",
            "minimum": 0,
            "description": "Attempts after a failed one (default 2).",
        },
        "backoff": closed(
            "Delay before retry n: a random time up to min(max, initial x 2^n) (full jitter).",
            {
                "initial": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
                "max": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
            },
        ),
        "circuit_breaker": closed(
            "Stop calling for a while after repeated failures.",
            {
                "failures": {"type": "integer", "minimum": 1, "description": "failures to open"},
                "reset_after": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
            },
        ),
        "description": {"type": "string"},
    },
    "kind",
    "url",
)

PLUGIN = closed(
    "A Python function found through an entry point in group catgad.handlers.",
    {
        "kind": {"const": "plugin"},
        "entry_point": text("The entry point's name."),
        "blocking": {
            "type": "boolean",
            "default": False,
            "description": "The function blocks (does I/O): run it on a worker thread.",
        },
        "description": {"type": "string"},
    },
    "kind",
    "entry_point",
)

SCHEMA: Schema = named("Named endpoints of user code.", {"anyOf": [WEBHOOK, PLUGIN]}, "Handlers")


def build_handlers(raw: Any, ctx: Building) -> dict[str, HandlerConfig]:
    return {
        name: HandlerConfig(
            name=name,
            kind=spec["kind"],
            url=spec.get("url"),
            entry_point=spec.get("entry_point"),
            options={k: v for k, v in spec.items() if k not in _KEYS},
            where=ctx.where(("handlers", name)),
            entry_point_where=ctx.where(("handlers", name, "entry_point"))
            if "entry_point" in spec
            else None,
        )
        for name, spec in (raw or {}).items()
    }


def lint_handlers(raw: Any, built: dict[str, HandlerConfig], ctx: Linting) -> None:
    """Each webhook secret is one that can sign."""
    for name, spec in ctx.raw("handlers").items():
        secret = spec.get("secret")
        listed = secret if isinstance(secret, list) else [secret]
        for index, value in enumerate(listed):
            if not isinstance(value, str):
                continue
            try:
                secret_key(value)
            except SecretError as exc:
                path: Path = ("handlers", name, "secret")
                ctx.error(path if isinstance(secret, str) else (*path, index), str(exc))


HANDLERS = Section("handlers", SCHEMA, build_handlers, dict, lint=lint_handlers)
