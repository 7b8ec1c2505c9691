"""The catch-up's light read path: SQLite records instead of envelopes, upcast all the same."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.evolution.upcast import Upcasters
from catgad.model import Config
from catgad.projections.records import Envelopes, record_reader
from catgad.projections.runner import ProjectionRunner
from catgad.projections.section import PROJECTIONS
from catgad.projections.targets.sqlite import SQLiteDatabase, SQLiteTarget
from catgad.store.memory import MemoryStore
from catgad.store.sqlite import SQLiteStore
from tests.projections.helpers import FAST, caught_up

# Renamed is at version 2: stored at version 1 its data said `title`, now `name`.
SERVICE = """
catgad: 1
store: memory
aggregates:
  Counter:
    id: cid
    on: {Added: {set: {n: data.by}}}
commands:
  Add:
    aggregate: Counter
    schema: {type: object, required: [cid, by], properties: {cid: {type: string}, by: {}}}
    emit: [{event: Added, data: {cid: data.cid, by: data.by}}]
events:
  Added:
    schema: {type: object, properties: {cid: {type: string}, by: {}}}
  Renamed:
    version: 2
    schema: {type: object, properties: {cid: {type: string}, name: {type: string}}}
    upcasters:
      1: {rename: {title: name}}
  Ignored:
    version: 2
    schema: {type: object, properties: {cid: {type: string}, why: {type: string}}}
    upcasters:
      1: {defaults: {why: old}}
projections:
  names:
    target: {kind: sqlite, path: read.db}
    key: data.cid
    columns:
      name: string
      total: {type: integer, default: 0}
    on:
      Renamed: {upsert: {name: data.name}}
      Added: {upsert: {total: data.by}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "service.yaml"
    path.write_text(textwrap.dedent(SERVICE))
    return load_config(path, env={})


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "events.db", synchronous="normal")
    await store.open()
    yield store
    await store.close()


def event(type_: str, version: int | None = None, **data: object) -> Envelope:
    return Envelope(type=type_, data=dict(data), source="tests", dataschemaversion=version)


async def fill(store: SQLiteStore) -> None:
    await store.append(
        "Counter-a",
        [
            event("Added", cid="a", by=3),
            event("Renamed", 1, cid="a", title="Ann"),  # old: upcast on every read path
            event("Ignored", 1, cid="a"),
            event("Renamed", 2, cid="a", name="Anna"),
        ],
        expected_version=0,
        command_id="fill",
    )


async def test_records_are_what_read_all_reads(sqlite: SQLiteStore) -> None:
    await fill(sqlite)
    envelopes = await sqlite.read_all(after=1, limit=3)
    records = await sqlite.read_records(after=1, limit=3, types={"Renamed"})
    assert [r.position for r in records] == [e.position for e in envelopes] == [2, 3, 4]
    assert [r.type for r in records] == ["Renamed", "Ignored", "Renamed"]
    # only the asked-for types are decoded; every record still gives its whole envelope
    assert [r.data for r in records] == [{"cid": "a", "title": "Ann"}, None, envelopes[2].data]
    assert [r.envelope() for r in records] == envelopes
    assert list(Envelopes(records)) == envelopes
    assert list(Envelopes(records)[1:]) == envelopes[1:]
    assert await sqlite.read_records(after=4) == []


async def test_records_are_upcast_like_envelopes(config: Config, sqlite: SQLiteStore) -> None:
    await fill(sqlite)
    store = Upcasters(config).wrap(sqlite)
    assert record_reader(store) is store
    envelopes = await store.read_all()
    for types in (None, {"Renamed", "Added"}, set()):
        records = await store.read_records(types=types)
        assert [r.envelope() for r in records] == envelopes
        assert records[1].data == {"cid": "a", "name": "Ann"}
        assert records[1].dataschemaversion == 2
    assert envelopes[2].data == {"cid": "a", "why": "old"}  # not listed: upcast all the same


async def test_stores_without_records_read_envelopes(config: Config) -> None:
    memory = MemoryStore()
    assert record_reader(memory) is None
    assert record_reader(Upcasters(config).wrap(memory)) is None


async def test_a_catch_up_on_records_applies_upcast_events(
    config: Config, sqlite: SQLiteStore, tmp_path: Path
) -> None:
    await fill(sqlite)
    store = Upcasters(config).wrap(sqlite)
    projection = PROJECTIONS.of(config)["names"]
    db = SQLiteDatabase(str(tmp_path / "read.db"))
    target = SQLiteTarget(projection, db)
    runner = ProjectionRunner(projection, store, target, owner="t", source="t", settings=FAST)
    assert runner._records is store  # the light path is the one under test
    runner.start()
    try:
        await caught_up(runner, store)
        assert await target.get("a") == {"key": "a", "name": "Anna", "total": 3}
        await runner.request_rebuild()
        runner.poke()
        await caught_up(runner, store)
        assert await target.get("a") == {"key": "a", "name": "Anna", "total": 3}
        # the upcast old event on its own, read from the store as records
        await sqlite.append(
            "Counter-b", [event("Renamed", 1, cid="b", title="Bo")], expected_version=0,
            command_id="b",
        )  # fmt: skip
        await caught_up(runner, store)
        assert await target.get("b") == {"key": "b", "name": "Bo", "total": 0}
    finally:
        await runner.stop()
        await db.close()
