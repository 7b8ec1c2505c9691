"""Fixtures of the projection tests: configs written from YAML, in-memory stores."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.model import Config
from catgad.store.memory import MemoryStore

# A counter service: one aggregate, events with a few fields, projections added per test.
BASE = """
catgad: 1
store: memory
aggregates:
  Counter:
    id: cid
    on:
      Added: {set: {n: data.by}}
      Renamed: {set: {name: data.name}}
      Removed: {set: {gone: "true"}}
commands:
  Add:
    aggregate: Counter
    schema:
      type: object
      required: [cid, by]
      properties: {cid: {type: string}, by: {type: integer}, group: {type: string}}
    emit: [{event: Added, data: {cid: data.cid, by: data.by, group: data.group}}]
events:
  Added:
    schema:
      type: object
      properties: {cid: {type: string}, by: {}, group: {type: string}}
  Renamed:
    schema: {type: object, properties: {cid: {type: string}, name: {}}}
  Removed:
    schema: {type: object, properties: {cid: {type: string}}}
"""

# Totals per counter and per group: a plain mapping and one that reads its rows.
PROJECTIONS = """
projections:
  counters:
    target: {kind: sqlite, path: read.db}
    key: data.cid
    columns:
      total: {type: integer, default: 0}
      name: {type: string, index: true}
      group: {type: string, index: true}
      last: string
    on:
      Added:
        upsert: {total: data.by, group: data.group, last: event.id}
      Renamed:
        update: {name: data.name}
      Removed:
        delete: true
  groups:
    target: {kind: sqlite, path: read.db}
    key: data.group
    columns:
      total: {type: integer, default: 0}
      count: {type: integer, default: 0}
    on:
      Added:
        - upsert: {total: row.total + data.by, count: row.count + 1}
          when: has(data.group)
"""


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Config]:
    def write(text: str, name: str = "service.yaml") -> Config:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return load_config(path, env={})

    return write


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    await s.open()
    try:
        yield s
    finally:
        await s.close()
