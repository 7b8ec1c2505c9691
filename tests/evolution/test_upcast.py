"""Upcasters: pure steps chained to the newest version, applied on every read path."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from catgad.app.load import load_config
from catgad.engine.commands import CommandEngine
from catgad.envelope import Envelope
from catgad.errors import UpcastFailed
from catgad.evolution.upcast import Upcasters, UpcastingStore
from catgad.handlers.registry import load_plugins
from catgad.model import Config
from catgad.store.memory import MemoryStore
from catgad.store.protocol import EventStore, RewritableStore
from catgad.store.sqlite import SQLiteStore
from tests.evolution.configs import write

V1_REGISTERED = {"customer_id": "c1", "customer": "Ada Lovelace", "mail": "ada@example.com"}
V3_REGISTERED = {
    "customer_id": "c1",
    "customer": {"first": "Ada", "last": "Lovelace"},
    "email": "ada@example.com",
    "tier": "basic",
    "vip": False,
}


@pytest.fixture(scope="module")
def v3(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return load_config(write(tmp_path_factory.mktemp("v3"), 3, "memory"), env={})


@pytest.fixture(scope="module")
def upcasters(v3: Config) -> Upcasters:
    return Upcasters(v3, load_plugins(v3))


def old(type_: str, data: dict[str, Any], version: int | None = 1, **extra: Any) -> Envelope:
    return Envelope(
        type=type_, data=data, dataschemaversion=version, subject="Customer-c1", **extra
    )


def test_a_chain_runs_every_step_to_the_newest_version(upcasters: Upcasters) -> None:
    event = old("CustomerRegistered", dict(V1_REGISTERED), streamversion=1)
    new = upcasters.upcast(event)
    assert new.data == V3_REGISTERED and new.dataschemaversion == 3
    assert (new.id, new.type, new.subject, new.time, new.streamversion) == (
        event.id, event.type, event.subject, event.time, event.streamversion
    )  # fmt: skip
    assert event.data == V1_REGISTERED and event.dataschemaversion == 1  # pure: input untouched


def test_from_a_middle_version(upcasters: Upcasters) -> None:
    v2 = {**V1_REGISTERED, "email": V1_REGISTERED["mail"], "tier": "gold", "vip": True}
    del v2["mail"]
    new = upcasters.upcast(old("CustomerRegistered", v2, 2))
    assert new.data == {**V3_REGISTERED, "tier": "gold", "vip": True}


def test_rename_and_remove(upcasters: Upcasters) -> None:
    moved = old("CustomerMoved", {"customer_id": "c1", "town": "Paris", "zip": "75001"})
    assert upcasters.upcast(moved).data == {"customer_id": "c1", "city": "Paris"}


def test_defaults_fill_only_what_is_missing_and_cel_sees_them(upcasters: Upcasters) -> None:
    gold = old("CustomerRegistered", {**V1_REGISTERED, "tier": "gold"})
    new = upcasters.upcast(gold)
    assert new.data["tier"] == "gold" and new.data["vip"] is True


def test_what_needs_nothing_is_returned_as_it_is(upcasters: Upcasters) -> None:
    current = old("CustomerRegistered", V3_REGISTERED, 3)
    assert upcasters.upcast(current) is current
    newer = old("CustomerRegistered", {"x": 1}, 4)  # written by a newer release: left alone
    assert upcasters.upcast(newer) is newer
    other = old("SomethingElse", {"x": 1}, 1)
    assert upcasters.upcast(other) is other
    unversioned = old("CustomerMoved", {"customer_id": "c1", "town": "Oslo"}, None)
    assert upcasters.upcast(unversioned).data == {"customer_id": "c1", "city": "Oslo"}


def test_a_failing_step_names_the_event_and_the_step(upcasters: Upcasters) -> None:
    broken = old("CustomerRegistered", {"customer_id": "c1", "customer": "Ada"})  # no mail
    with pytest.raises(UpcastFailed) as caught:
        upcasters.upcast(broken)
    assert caught.value.from_version == 1 and caught.value.event_id == broken.id
    assert "upcaster 1 -> 2 failed: set.vip" in caught.value.detail


def test_a_plugin_step_that_raises_or_returns_junk(v3: Config) -> None:
    def raising(event: dict[str, Any]) -> Any:
        raise ValueError("bad name")

    v2 = old("CustomerRegistered", {"customer_id": "c1", "customer": "A B", "email": "e"}, 2)
    with pytest.raises(UpcastFailed, match="names raised ValueError: bad name"):
        Upcasters(v3, {"names": raising}).upcast(v2)
    with pytest.raises(UpcastFailed, match="names returned list"):
        Upcasters(v3, {"names": lambda event: []}).upcast(v2)


def test_default_values_are_copied(tmp_path: Path) -> None:
    text = (
        write(tmp_path, 3, "memory")
        .read_text()
        .replace("defaults: {tier: basic}", "defaults: {tier: basic, tags: [new]}")
    )
    path = tmp_path / "tags.yaml"
    path.write_text(text)
    config = load_config(path, env={})
    ups = Upcasters(config, load_plugins(config))
    first = ups.upcast(old("CustomerRegistered", dict(V1_REGISTERED)))
    first.data["tags"].append("mutated")
    second = ups.upcast(old("CustomerRegistered", dict(V1_REGISTERED)))
    assert second.data["tags"] == ["new"]


async def test_every_read_path_is_upcast(upcasters: Upcasters) -> None:
    raw = MemoryStore()
    store = UpcastingStore(raw, upcasters)
    await store.open()
    registered = old("CustomerRegistered", dict(V1_REGISTERED))
    moved = old("CustomerMoved", {"customer_id": "c1", "town": "Paris", "zip": "1"})
    await store.append("Customer-c1", [registered, moved], expected_version=0, command_id="c")
    want = [V3_REGISTERED, {"customer_id": "c1", "city": "Paris"}]
    assert [e.data for e in await store.read("Customer-c1")] == want
    assert [e.data for e in await store.read_all()] == want
    found = await store.find_command("c")
    assert found is not None and [e.data for e in found.events] == want
    again = await store.append("Customer-c1", [registered], expected_version=0, command_id="c")
    assert again.duplicate and [e.data for e in again.events] == want
    assert [e.dataschemaversion for e in await store.read("Customer-c1")] == [3, 2]
    assert [e.dataschemaversion for e in await raw.read("Customer-c1")] == [1, 1]  # as stored
    assert await store.stream_version("Customer-c1") == 2
    await store.close()


def test_the_wrapper_is_the_same_kind_of_store(upcasters: Upcasters, tmp_path: Path) -> None:
    for inner in (MemoryStore(), SQLiteStore(tmp_path / "x.db")):
        wrapped = upcasters.wrap(inner)
        assert isinstance(wrapped, UpcastingStore)
        assert isinstance(wrapped, EventStore) and isinstance(wrapped, RewritableStore)
        assert (wrapped.name, wrapped.capabilities) == (inner.name, inner.capabilities)


@pytest.mark.parametrize("store_class", [MemoryStore, SQLiteStore])
def test_no_store_method_bypasses_the_upcasters_unnoticed(store_class: type) -> None:
    """Each public method of a store is upcast by the wrapper or known not to return events."""
    mine = {name for name, _ in inspect.getmembers(UpcastingStore, inspect.isfunction)}
    theirs = {
        name
        for name, _ in inspect.getmembers(store_class, inspect.isfunction)
        if not name.startswith("_")
    }
    unknown = theirs - mine - UpcastingStore.PASSED_THROUGH
    assert not unknown, (
        f"{store_class.__name__} has methods UpcastingStore passes through unread: {unknown}; "
        "upcast what they return in catgad/evolution/upcast.py, or add them to PASSED_THROUGH"
    )


def test_no_upcasters_no_wrapper(tmp_path: Path) -> None:
    v1 = load_config(write(tmp_path, 1, "memory"), env={})
    store = MemoryStore()
    assert Upcasters(v1).wrap(store) is store


async def test_state_is_built_from_old_events_with_the_new_rules(
    v3: Config, upcasters: Upcasters
) -> None:
    raw = MemoryStore()
    await raw.open()
    events = [
        old("CustomerRegistered", dict(V1_REGISTERED)),
        old("CustomerMoved", {"customer_id": "c1", "town": "Paris", "zip": "1"}),
    ]
    await raw.append("Customer-c1", events, expected_version=0, command_id="old")
    engine = CommandEngine(v3, upcasters.wrap(raw))
    _, loaded = await engine.aggregate_state("Customer", "c1")
    assert loaded.state == {
        "moves": 1,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "tier": "basic",
        "city": "Paris",
    }
    result = await engine.execute("Move", {"customer_id": "c1", "city": "Rome"})
    assert result.events[0].dataschemaversion == 2 and result.version == 3
    await raw.close()
