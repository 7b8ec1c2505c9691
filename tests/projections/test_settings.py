"""`runtime.projections`: the lease and poll settings reach every projection's runner."""

from __future__ import annotations

import textwrap
from pathlib import Path

from catgad.app.load import load_config
from catgad.projections.manager import ProjectionManager
from catgad.projections.runner import RunnerSettings
from catgad.store.memory import MemoryStore

SERVICE = """
catgad: 1
store: memory
events:
  Added: {schema: {type: object, properties: {cid: {type: string}}}}
projections:
  counters:
    target: {kind: sqlite, path: read.db}
    key: data.cid
    columns: {n: integer}
    on: {Added: {upsert: {n: "1"}}}
"""


async def runners_of(tmp_path: Path, extra: str) -> ProjectionManager:
    path = tmp_path / "service.yaml"
    path.write_text(textwrap.dedent(SERVICE) + textwrap.dedent(extra))
    manager = ProjectionManager(load_config(path, env={}), MemoryStore())
    await manager.start(run=False)
    return manager


async def test_defaults(tmp_path: Path) -> None:
    manager = await runners_of(tmp_path, "")
    runner = manager.runners["counters"]
    assert runner.settings == RunnerSettings()
    assert runner.settings.lease_ttl == 10.0 and runner.settings.poll_interval == 0.05
    assert runner.settings.linger == 0.02 and runner.loop.settings.linger == 0.02
    await manager.stop()


async def test_configured(tmp_path: Path) -> None:
    manager = await runners_of(
        tmp_path, "runtime:\n  projections: {lease_ttl: 30, poll_interval: 0.5, linger: 0}\n"
    )
    runner = manager.runners["counters"]
    assert (runner.settings.lease_ttl, runner.settings.poll_interval) == (30.0, 0.5)
    assert runner.loop.settings.linger == 0.0
    assert runner.lease is not None and runner.lease.ttl == 30.0
    assert runner.lease.period == 10.0  # renewed every third of it
    await manager.stop()
