"""The same migration on every store backend: memory, SQLite, PostgreSQL, Redis and NATS
(the oldest supported server; NATS rewrites through an overlay, see nats_rewrite).

Version-1 events are written by the version-1 service itself; under the
version-3 config a dry run changes nothing, a run stopped at a limit is
resumed, every event ends at its newest version, and each aggregate's state
is the same as it was read (upcast) before the migration.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from catgad.app.load import load_config
from catgad.engine.commands import CommandEngine
from catgad.evolution.migrate import migrate
from catgad.evolution.upcast import Upcasters
from catgad.handlers.registry import load_plugins
from catgad.model import Config
from catgad.store.protocol import EventStore, RewritableStore
from tests.evolution.configs import write
from tests.helpers.daemon import run_cli
from tests.helpers.stores import BACKEND_PARAMS, BACKENDS

CUSTOMERS = [f"c{i}" for i in range(12)]


async def written_by_v1(config: Config, store: EventStore) -> None:
    engine = CommandEngine(config, store)
    for i, customer in enumerate(CUSTOMERS):
        name = f"Ada{i} Lovelace"
        await engine.execute(
            "Register", {"customer_id": customer, "customer": name, "mail": f"{customer}@x.org"}
        )
        for n in range(i % 3 + 1):
            await engine.execute("Move", {"customer_id": customer, "town": f"Town{n}"})


async def seen(config: Config, store: EventStore) -> tuple[list[Any], dict[str, Any]]:
    upcasting = Upcasters(config, load_plugins(config)).wrap(store)
    events = [
        (e.position, e.subject, e.streamversion, e.id, e.type, e.dataschemaversion, e.data)
        for e in await upcasting.read_all(limit=10_000)
    ]
    engine = CommandEngine(config, upcasting)
    states = {}
    for customer in CUSTOMERS:
        _, loaded = await engine.aggregate_state("Customer", customer)
        states[customer] = (loaded.version, loaded.state)
    return events, states


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_migration(backend: str, tmp_path: Path) -> None:
    v1 = load_config(write(tmp_path, 1, "memory"), env={})
    v3 = load_config(write(tmp_path, 3, "memory"), env={})
    upcasters = Upcasters(v3, load_plugins(v3))
    async with BACKENDS[backend](tmp_path) as store:
        if backend == "nats" and not isinstance(store, RewritableStore):
            pytest.skip(f"the {store.name} store cannot rewrite events in place yet")
        assert isinstance(store, RewritableStore)  # any other backend that cannot is a failure
        await written_by_v1(v1, store)
        total = len(await store.read_all(limit=10_000))
        assert total == 36
        raw = await store.read_all(limit=10_000)
        before = await seen(v3, store)

        dry = await migrate(store, v3, upcasters, dry_run=True, batch=7)
        assert (dry.scanned, dry.upcast, dry.current, dry.failed) == (total, total, 0, [])
        assert await store.read_all(limit=10_000) == raw

        limited = await migrate(store, v3, upcasters, batch=7, limit=10)
        assert (limited.stopped, limited.upcast) == ("limit", 10)
        resumed = await migrate(store, v3, upcasters, batch=7)
        assert (resumed.stopped, resumed.upcast, resumed.current) == (None, total - 10, 10)

        after = await store.read_all(limit=10_000)
        assert len(after) == total
        assert {e.dataschemaversion for e in after} == {2, 3}
        assert [(e.id, e.position, e.streamversion) for e in after] == [
            (e.id, e.position, e.streamversion) for e in raw
        ]
        assert await seen(v3, store) == before
        again = await migrate(store, v3, upcasters)
        assert (again.upcast, again.current) == (0, total)


@pytest.mark.postgres
def test_the_cli_on_postgres(tmp_path: Path) -> None:
    from tests.servers.postgres import schema_on_shared_server

    with schema_on_shared_server() as (url, schema):
        store = f"{{kind: postgres, url: '{url}', options: {{schema: {schema}}}}}"
        v1, v3 = write(tmp_path, 1, store), write(tmp_path, 3, store)

        async def seed() -> None:
            config = load_config(v1, env={})
            from catgad.store.factory import open_store

            opened = open_store(config.store)
            await opened.open()
            try:
                await written_by_v1(config, opened)
            finally:
                await opened.close()

        asyncio.run(seed())
        dry = run_cli("migrate", str(v3), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "to upcast:   36" in dry.stdout.splitlines()
        part = run_cli("migrate", str(v3), "--limit", "20", "--batch", "8")
        assert part.returncode == 0 and "upcast:      20" in part.stdout.splitlines()
        rest = run_cli("migrate", str(v3))
        assert rest.returncode == 0, rest.stderr
        assert "upcast:      16" in rest.stdout.splitlines()
        assert "current:     20" in rest.stdout.splitlines()


# -- Redis through the CLI: the overlay of rewritten bodies as a user meets it ---------------


async def _redis_dump(url: str, prefix: str) -> dict[bytes, bytes | None]:
    """Every key of the store under `prefix`, serialized by the server (DUMP)."""
    import redis.asyncio as aioredis

    from tests.servers.redis import keys_under

    client = aioredis.Redis.from_url(url)
    try:
        return {key: await client.dump(key) for key in await keys_under(url, prefix)}
    finally:
        await client.aclose()


async def _rewritten_count(url: str, prefix: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        return int(await client.hlen(prefix + "rewritten"))
    finally:
        await client.aclose()


class _RedisService:
    """The customer service's two configs over one key prefix of the Redis test server."""

    def __init__(self, tmp_path: Path) -> None:
        from tests.servers.redis import server_url, unique_prefix

        self.url, self.prefix = server_url(), unique_prefix()
        store = f"{{kind: redis, url: '{self.url}', options: {{prefix: '{self.prefix}'}}}}"
        self.v1_path, self.v3_path = write(tmp_path, 1, store), write(tmp_path, 3, store)
        self.v1 = load_config(self.v1_path, env={})
        self.v3 = load_config(self.v3_path, env={})

    def run(self, coro_fn: Callable[[EventStore], Any]) -> Any:
        from catgad.store.factory import open_store

        async def go() -> Any:
            store = open_store(self.v3.store)
            await store.open()
            try:
                return await coro_fn(store)
            finally:
                await store.close()

        return asyncio.run(go())

    def raw(self) -> list[tuple[Any, ...]]:
        """Every stored event as read now, without upcasting."""

        async def everything(store: EventStore) -> list[tuple[Any, ...]]:
            events = await store.read_all(limit=100_000)
            return [
                (e.position, e.subject, e.streamversion, e.id, e.type, e.dataschemaversion)
                for e in events
            ]

        result: list[tuple[Any, ...]] = self.run(everything)
        return result

    def dump(self) -> dict[bytes, bytes | None]:
        result: dict[bytes, bytes | None] = asyncio.run(_redis_dump(self.url, self.prefix))
        return result

    def rewritten(self) -> int:
        return asyncio.run(_rewritten_count(self.url, self.prefix))


@pytest.fixture
def redis_service(tmp_path: Path) -> Iterator[_RedisService]:
    from tests.servers.redis import wipe

    service = _RedisService(tmp_path)
    try:
        yield service
    finally:
        asyncio.run(wipe(service.url, service.prefix))


@pytest.mark.redis
def test_the_cli_on_redis(redis_service: _RedisService) -> None:
    svc = redis_service
    svc.run(lambda store: written_by_v1(svc.v1, store))
    before = svc.run(lambda store: seen(svc.v3, store))
    raw, dumped = svc.raw(), svc.dump()
    dry = run_cli("migrate", str(svc.v3_path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "to upcast:   36" in dry.stdout.splitlines()
    assert svc.dump() == dumped  # byte for byte: not one key written
    part = run_cli("migrate", str(svc.v3_path), "--limit", "20", "--batch", "8")
    assert part.returncode == 0, part.stderr
    assert "upcast:      20" in part.stdout.splitlines()
    assert svc.rewritten() == 20
    rest = run_cli("migrate", str(svc.v3_path))
    assert rest.returncode == 0, rest.stderr
    assert "upcast:      16" in rest.stdout.splitlines()
    assert "current:     20" in rest.stdout.splitlines()
    after = svc.raw()
    assert [row[:5] for row in after] == [row[:5] for row in raw]  # nothing moved, none lost
    assert {row[5] for row in after} == {2, 3}
    assert svc.run(lambda store: seen(svc.v3, store)) == before
    again = run_cli("migrate", str(svc.v3_path))
    assert again.returncode == 0 and "upcast:      0" in again.stdout.splitlines()


@pytest.mark.redis
@pytest.mark.slow
def test_kill_9_mid_run_on_redis_loses_nothing(redis_service: _RedisService) -> None:
    from tests.evolution.test_migrate import seed, view

    svc = redis_service
    total = svc.run(lambda store: seed(store, 2000, 4))
    sample = [f"c{i}" for i in range(0, 2000, 97)]
    before, raw = svc.run(lambda store: view(svc.v3, store, sample)), svc.raw()
    proc = subprocess.Popen(
        [sys.executable, "-m", "catgad.cli.main", "migrate", str(svc.v3_path), "--batch", "5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not svc.rewritten():
            assert proc.poll() is None, "migrate finished before it could be interrupted"
            assert time.monotonic() < deadline, "migrate made no progress"
            time.sleep(0.01)
    finally:
        proc.kill()  # SIGKILL: no clean-up at all
        proc.wait(10)
    migrated = svc.rewritten()
    assert 0 < migrated < total
    assert migrated % 5 == 0  # every page of 5 needed upcasting: written whole or not at all
    assert [row[:5] for row in svc.raw()] == [row[:5] for row in raw]  # not one event lost
    assert svc.run(lambda store: view(svc.v3, store, sample)) == before
    done = run_cli("migrate", str(svc.v3_path), "--batch", "500", timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"current:     {migrated:,}" in done.stdout.splitlines()
    assert svc.rewritten() == total
    assert {row[5] for row in svc.raw()} == {2, 3}
    assert svc.run(lambda store: view(svc.v3, store, sample)) == before
