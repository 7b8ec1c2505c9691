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


def open_store(cfg: StoreConfig) -> EventStore:
    """The store for `cfg`; `await store.open()` before use."""
    if cfg.kind == "memory":
        _check_options(cfg.kind, cfg.options, {})
        return MemoryStore()
    if cfg.kind == "sqlite":
        options = _check_options(cfg.kind, cfg.options, _SQLITE_OPTIONS)
        return SQLiteStore(cfg.path or DEFAULT_PATH, synchronous=cfg.synchronous, **options)
    raise CatgadError(f"store kind {cfg.kind!r} is not available yet")


def _check_options(kind: str, options: dict[str, Any], known: dict[str, type]) -> dict[str, Any]:
    for key, value in options.items():
        if key not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise CatgadError(f"store option {key!r} is not known for {kind} (known: {allowed})")
        # bool is an int to Python, but `readers: true` is surely a mistake
        if not isinstance(value, known[key]) or isinstance(value, bool):
            raise CatgadError(f"store option {key!r} must be {known[key].__name__}, not {value!r}")
    return dict(options)
