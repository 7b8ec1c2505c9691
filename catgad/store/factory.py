"""Build the event store a config asks for (unopened: the caller opens and closes it)."""

from __future__ import annotations

from typing import Any

from catgad.config.model import StoreConfig
from catgad.errors import CatgadError
from catgad.store.memory import MemoryStore
from catgad.store.protocol import EventStore
from catgad.store.sqlite import DEFAULT_PATH, SQLiteStore

# store.options understood per kind, with the type each must have
_SQLITE_OPTIONS: dict[str, type] = {"busy_timeout_ms": int, "max_batch": int, "readers": int}
_POSTGRES_OPTIONS: dict[str, type] = {
    "schema": str,
    "pool_min": int,
    "pool_max": int,
    "max_batch": int,
    "writers": int,
    "connect_timeout": float,
    "pool_timeout": float,
    "statement_timeout": float,
    "reconnect_timeout": float,
}
_NATS_OPTIONS: dict[str, type] = {
    "stream": str,
    "subject_prefix": str,
    "replicas": int,
    "storage": str,
    "timeout": float,
    "duplicate_window": float,
}
_REDIS_OPTIONS: dict[str, type] = {
    "prefix": str,
    "pool_size": int,
    "socket_timeout": float,
    "connect_timeout": float,
    "max_batch": int,
    "max_pipelines": int,
}


def open_store(cfg: StoreConfig) -> EventStore:
    """The store for `cfg`; `await store.open()` before use."""
    if cfg.kind == "memory":
        _check_options(cfg.kind, cfg.options, {})
        return MemoryStore()
    if cfg.kind == "sqlite":
        options = _check_options(cfg.kind, cfg.options, _SQLITE_OPTIONS)
        return SQLiteStore(cfg.path or DEFAULT_PATH, synchronous=cfg.synchronous, **options)
    if cfg.kind == "redis":
        # imported here so that redis-py is loaded only by configs that use it
        from catgad.store.redis import DEFAULT_URL, RedisStore

        options = _check_options(cfg.kind, cfg.options, _REDIS_OPTIONS)
        return RedisStore(cfg.url or DEFAULT_URL, **options)
    if cfg.kind == "postgres":
        from catgad.store.postgres import DEFAULT_URL as PG_URL
        from catgad.store.postgres import PostgresStore

        options = _check_options(cfg.kind, cfg.options, _POSTGRES_OPTIONS)
        return PostgresStore(cfg.url or PG_URL, **options)
    if cfg.kind == "nats":
        from catgad.store.nats import DEFAULT_URL as NATS_URL
        from catgad.store.nats import NATSStore

        options = _check_options(cfg.kind, cfg.options, _NATS_OPTIONS)
        return NATSStore(cfg.url or NATS_URL, **options)
    raise CatgadError(f"store kind {cfg.kind!r} is not available yet")


def _check_options(kind: str, options: dict[str, Any], known: dict[str, type]) -> dict[str, Any]:
    for key, value in options.items():
        if key not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise CatgadError(f"store option {key!r} is not known for {kind} (known: {allowed})")
        want = known[key]
        # bool is an int to Python, but `readers: true` is surely a mistake
        if isinstance(value, bool) or not isinstance(value, want):
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                continue  # `socket_timeout: 5` means 5.0
            raise CatgadError(f"store option {key!r} must be {want.__name__}, not {value!r}")
    return {k: float(v) if known[k] is float else v for k, v in options.items()}
