"""Store and bus options are part of the config's JSON Schema: `catgad validate` reports an
unknown or ill-typed option at its file:line:column, with a suggestion, and each backend's
declared options are exactly what its constructor takes."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.bus.kafka import KafkaBus
from catgad.bus.memory import MemoryBus
from catgad.bus.nats import NatsBus
from catgad.bus.section import OPTIONS as BUS_OPTIONS
from catgad.errors import ConfigError
from catgad.store.nats import NATSStore
from catgad.store.postgres import PostgresStore
from catgad.store.redis import RedisStore
from catgad.store.section import OPTIONS as STORE_OPTIONS
from catgad.store.sqlite import SQLiteStore

STORES = {"sqlite": SQLiteStore, "postgres": PostgresStore, "redis": RedisStore, "nats": NATSStore}
BUSES = {"memory": MemoryBus, "nats": NatsBus, "kafka": KafkaBus}


def _keyword_parameters(cls: type) -> set[str]:
    taken = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    return {p.name for p in taken if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_store_options_are_what_the_store_takes(kind: str) -> None:
    assert set(STORE_OPTIONS[kind]) == _keyword_parameters(STORES[kind]) - {"synchronous"}


@pytest.mark.parametrize("kind", sorted(BUSES))
def test_bus_options_are_what_the_bus_takes(kind: str) -> None:
    assert set(BUS_OPTIONS[kind]) == _keyword_parameters(BUSES[kind])


def _issues(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text("catgad: 1\n" + body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    return [str(issue) for issue in caught.value.issues]


def test_a_misspelt_store_option_is_reported_where_it_is(tmp_path: Path) -> None:
    issues = _issues(tmp_path, "store:\n  kind: sqlite\n  options:\n    readerz: 4\n")
    assert issues == [
        f"{tmp_path / 'c.yaml'}:5:5: store.options: unknown key 'readerz' (did you mean 'readers'?)"
    ]


def test_an_ill_typed_store_option_is_reported(tmp_path: Path) -> None:
    issues = _issues(tmp_path, "store:\n  kind: redis\n  options:\n    pool_size: many\n")
    assert issues == [
        f"{tmp_path / 'c.yaml'}:5:16: store.options.pool_size: expected an integer, got 'many'"
    ]


def test_the_default_kind_has_its_options_checked(tmp_path: Path) -> None:
    issues = _issues(tmp_path, "store:\n  path: x.db\n  options:\n    stream: s\n")
    assert issues == [f"{tmp_path / 'c.yaml'}:5:5: store.options: unknown key 'stream'"]


def test_an_option_of_another_bus_is_refused(tmp_path: Path) -> None:
    issues = _issues(tmp_path, "bus:\n  kind: kafka\n  options:\n    ack_wait: 5\n")
    assert issues == [f"{tmp_path / 'c.yaml'}:5:5: bus.options: unknown key 'ack_wait'"]


def test_bus_option_bounds_are_checked(tmp_path: Path) -> None:
    issues = _issues(tmp_path, "bus:\n  kind: nats\n  options:\n    storage: disk\n")
    assert issues == [
        f"{tmp_path / 'c.yaml'}:5:14: bus.options.storage: expected one of file, memory, got 'disk'"
    ]


def test_a_kafka_heartbeat_not_below_the_session_timeout_is_refused(tmp_path: Path) -> None:
    issues = _issues(tmp_path, "bus:\n  kind: kafka\n  options:\n    heartbeat_interval: 3\n")
    assert issues == [
        f"{tmp_path / 'c.yaml'}:5:25: bus.options.heartbeat_interval: heartbeat_interval (3s)"
        " must be below session_timeout (2s); a third of it is usual"
    ]
