"""The `store:` section: which event store, where, and each backend's own options.

Every option a backend reads is declared here with its type, so `catgad validate`
reports an unknown or ill-typed one (`store.options.readerz`) at its line, with
a suggestion, and `catgad run` never meets a mistake the validator let through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from catgad.config.fragments import Schema, closed, kinded, or_env, or_env_value, text
from catgad.config.section import Building, Section, Where

StoreKind = Literal["memory", "sqlite", "postgres", "redis", "nats"]
DEFAULT_SQLITE_PATH = "catgad.db"
# What the short forms (`store: redis`) connect to.
DEFAULT_URLS = {
    "postgres": "postgresql://127.0.0.1:5432/postgres",
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
}


@dataclass(slots=True)
class StoreConfig:
    """`store: sqlite` or `store: {kind: sqlite, path: ..., synchronous: full}`."""

    kind: StoreKind = "sqlite"
    url: str | None = None
    path: str | None = None  # sqlite file; relative paths are relative to the config file
    synchronous: Literal["full", "normal"] = "full"
    options: dict[str, Any] = field(default_factory=dict)
    where: Where | None = None  # where `store` is written, for errors found when it opens


def _int(description: str, low: int = 1) -> Schema:
    return or_env_value({"type": "integer", "minimum": low, "description": description})


def _seconds(description: str) -> Schema:
    seconds = {"type": "number", "exclusiveMinimum": 0, "description": f"seconds: {description}"}
    return or_env_value(seconds)


def _name(description: str) -> Schema:
    return text(description, pattern=or_env("^[A-Za-z0-9_.-]+$"))


# store.options each kind reads (catgad.store.factory passes them to the store's constructor)
OPTIONS: dict[str, dict[str, Schema]] = {
    "memory": {},
    "sqlite": {
        "busy_timeout_ms": _int("how long a writer waits for the file lock, in ms", 0),
        "max_batch": _int("appends committed together by the single writer"),
        "readers": _int("reader threads (reads run beside the writer in WAL mode)"),
    },
    "postgres": {
        "schema": _name("the schema holding catgad's tables (created when missing)"),
        "pool_min": _int("connections kept open", 0),
        "pool_max": _int("most connections open at once"),
        "max_batch": _int("appends committed together"),
        "writers": _int("connections appending at once"),
        "connect_timeout": _seconds("to connect"),
        "pool_timeout": _seconds("to wait for a free connection"),
        "statement_timeout": _seconds("one statement may run"),
        "reconnect_timeout": _seconds("to keep reconnecting before reporting the store down"),
    },
    "redis": {
        "prefix": {"type": "string", "description": "the prefix of every key catgad writes"},
        "pool_size": _int("connections in the pool"),
        "socket_timeout": _seconds("one command may take"),
        "connect_timeout": _seconds("to connect"),
        "max_batch": _int("appends sent in one pipeline"),
        "max_pipelines": _int("pipelines in flight at once"),
    },
    "nats": {
        "stream": _name("the JetStream stream holding the events"),
        "subject_prefix": _name("the first token of the store's subjects"),
        "replicas": _int("stream replicas (a cluster's servers keeping each message)"),
        "storage": {"enum": ["file", "memory"], "description": "JetStream storage kind"},
        "timeout": _seconds("one request to the server may take"),
        "duplicate_window": _seconds("JetStream remembers message ids for deduplication"),
    },
}

SCHEMA = kinded(
    "Event store",
    "Where events are kept: memory, sqlite (the default), postgres, redis or nats "
    "(JetStream). The short form uses the local default address.",
    "sqlite",
    closed(
        "Event store, long form.",
        {
            "url": text("Server URL (postgres, redis, nats)."),
            "path": text("SQLite file, relative to this config file.", default="catgad.db"),
            "synchronous": {
                "enum": ["full", "normal"],
                "default": "full",
                "description": "SQLite: full syncs every commit to disk; normal is faster "
                "but a power loss may drop the last commits.",
            },
            "options": {"type": "object", "description": "the backend's own settings"},
        },
    ),
    {kind: closed(f"{kind} store options", known) for kind, known in OPTIONS.items()},
)


def build_store(raw: Any, ctx: Building) -> StoreConfig:
    spec: dict[str, Any] = {"kind": raw} if isinstance(raw, str) else raw or {}
    kind = spec.get("kind", "sqlite")
    store = StoreConfig(
        kind=cast(StoreKind, kind),
        url=spec.get("url", DEFAULT_URLS.get(kind)),
        synchronous=spec.get("synchronous", "full"),
        options=dict(spec.get("options") or {}),
        where=ctx.where(("store",)) if raw is not None else None,
    )
    if kind == "sqlite":
        store.path = ctx.file(spec.get("path", DEFAULT_SQLITE_PATH), ("store", "path"))
    else:
        ctx.unused(spec, ("path", "synchronous"), "store", "the sqlite store")
    if kind in ("memory", "sqlite"):
        ctx.unused(spec, ("url",), "store", "the postgres, redis and nats stores")
    return store


def _default() -> StoreConfig:
    return StoreConfig()


STORE = Section("store", SCHEMA, build_store, _default, named=False)
