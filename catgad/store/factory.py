"""Build the event store a config asks for (unopened: the caller opens and closes it)."""

from __future__ import annotations

from typing import Any

from catgad.config.section import checked_options, config_error
from catgad.store.memory import MemoryStore
from catgad.store.protocol import EventStore
from catgad.store.section import OPTIONS, StoreConfig
from catgad.store.sqlite import DEFAULT_PATH, SQLiteStore


def open_store(cfg: StoreConfig) -> EventStore:
    """The store for `cfg`; `await store.open()` before use."""
    if cfg.kind == "memory":
        _checked(cfg)
        return MemoryStore()
    if cfg.kind == "sqlite":
        options = _checked(cfg)
        return SQLiteStore(cfg.path or DEFAULT_PATH, synchronous=cfg.synchronous, **options)
    if cfg.kind == "redis":
        # imported here so that redis-py is loaded only by configs that use it
        from catgad.store.redis import DEFAULT_URL, RedisStore

        options = _checked(cfg)
        return RedisStore(cfg.url or DEFAULT_URL, **options)
    if cfg.kind == "postgres":
        from catgad.store.postgres import DEFAULT_URL as PG_URL
        from catgad.store.postgres import PostgresStore

        options = _checked(cfg)
        return PostgresStore(cfg.url or PG_URL, **options)
    if cfg.kind == "nats":
        from catgad.store.nats import DEFAULT_URL as NATS_URL
        from catgad.store.nats import NATSStore

        options = _checked(cfg)
        return NATSStore(cfg.url or NATS_URL, **options)
    raise config_error(cfg.where, "store.kind", f"expected one of {', '.join(OPTIONS)}")


def _checked(cfg: StoreConfig) -> dict[str, Any]:
    known = OPTIONS[cfg.kind]
    return checked_options("store.options", f"the {cfg.kind} store", cfg.options, known, cfg.where)
