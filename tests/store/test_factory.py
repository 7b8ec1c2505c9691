"""open_store builds the store a config names, unopened, and says clearly what it cannot build."""

from pathlib import Path

import pytest

from catgad.errors import ConfigError
from catgad.store.factory import open_store
from catgad.store.memory import MemoryStore
from catgad.store.protocol import EventStore
from catgad.store.section import StoreConfig
from catgad.store.sqlite import SQLiteStore


def test_memory() -> None:
    store = open_store(StoreConfig(kind="memory"))
    assert isinstance(store, MemoryStore) and isinstance(store, EventStore)


async def test_sqlite_with_options(tmp_path: Path) -> None:
    cfg = StoreConfig(
        kind="sqlite",
        path=str(tmp_path / "deep" / "events.db"),
        synchronous="normal",
        options={"busy_timeout_ms": 100, "max_batch": 8, "readers": 2},
    )
    store = open_store(cfg)
    assert isinstance(store, SQLiteStore) and store.synchronous == "normal"
    assert not (tmp_path / "deep").exists()  # unopened
    await store.open()
    try:
        await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("sqlite", {"batch": 3}, "store.options.batch: not an option of the sqlite store"),
        ("sqlite", {"readers": "4"}, "store.options.readers: expected integer, got '4'"),
        ("sqlite", {"readers": True}, "store.options.readers: expected integer, got True"),
        ("memory", {"readers": 1}, r"not an option of the memory store \(none\)"),
    ],
)
def test_bad_options_are_refused(kind: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(StoreConfig(kind=kind, options=options))  # type: ignore[arg-type]


def test_redis_store_from_config_with_int_timeouts() -> None:
    store = open_store(
        StoreConfig(
            kind="redis",
            url="redis://127.0.0.1:6379/0",
            options={"prefix": "t:", "socket_timeout": 5},
        )
    )
    assert store.name == "redis"


def test_nats_store_from_config() -> None:
    store = open_store(
        StoreConfig(kind="nats", url="nats://127.0.0.1:4222", options={"stream": "T", "timeout": 2})
    )
    assert store.name == "nats"
