"""The Redis store passes the coordination contract against a real server, and fails as it should.

A peer is a second RedisStore on the same server and key prefix: its own
connection pool, nothing shared in memory, as another daemon would have.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from catgad.errors import StoreError, Unavailable
from catgad.store.protocol import Coordination
from catgad.store.redis import RedisStore
from catgad.store.redis_coordination import milliseconds
from tests.contracts.coordination import CoordinationContract
from tests.servers.redis import (
    PrivateRedis,
    keys_under,
    redis_store,
    require_redis_server,
    server_url,
    unique_prefix,
    wipe,
)

pytestmark = pytest.mark.redis


@asynccontextmanager
async def _peer(store: Coordination) -> AsyncIterator[Coordination]:
    assert isinstance(store, RedisStore)
    peer = RedisStore(store.url, prefix=store.prefix)
    await peer.open()
    try:
        yield peer
    finally:
        await peer.close()  # the keys are wiped with `store`


class TestRedisCoordination(CoordinationContract):
    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return redis_store()

    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        return _peer(store)


class TestRedisCoordinationOneConnection(CoordinationContract):
    """One connection per daemon: concurrent lease and checkpoint calls queue, never deadlock."""

    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return redis_store(pool_size=1, max_pipelines=1)

    @asynccontextmanager
    async def connect_peer(self, store: Coordination) -> AsyncIterator[Coordination]:
        assert isinstance(store, RedisStore)
        peer = RedisStore(store.url, prefix=store.prefix, pool_size=1, max_pipelines=1)
        await peer.open()
        try:
            yield peer
        finally:
            await peer.close()


# -- the key space ---------------------------------------------------------------------


async def test_keys_stay_under_the_prefix_and_only_leases_expire() -> None:
    async with redis_store() as store:
        assert await store.acquire_lease("relay:s", "a", 30)
        await store.save_checkpoint("relay:s", 4)
        p = store.prefix.encode()
        lease, checkpoint = p + b"lease:relay:s", p + b"checkpoint:relay:s"
        assert await keys_under(store.url, store.prefix) == {lease, checkpoint}
        admin = aioredis.Redis.from_url(store.url)
        try:
            assert await admin.get(lease) == b"a"
            assert await admin.get(checkpoint) == b"4"
            # the expiry is the server's: it counts down on its clock from the ttl
            assert 29_000 < await admin.pttl(lease) <= 30_000
            assert await admin.pttl(checkpoint) == -1  # no expiry
            assert await store.acquire_lease("relay:s", "a", 60)  # renewal sets a new expiry
            assert 59_000 < await admin.pttl(lease) <= 60_000
        finally:
            await admin.aclose()
        await store.release_lease("relay:s", "a")
        assert await keys_under(store.url, store.prefix) == {checkpoint}
    assert await keys_under(store.url, store.prefix) == set()


async def test_odd_names_and_prefixes() -> None:
    names = ["", "a b", "x:y", "lease:z", "*", "[a]?", "ü 注文 🚀", "a\nb"]
    async with redis_store(prefix=f"catgad-test:{unique_prefix()}*[glob]?:") as store:
        for i, name in enumerate(names):
            assert await store.acquire_lease(name, f"owner {i} ü", 30)
            await store.save_checkpoint(name, i + 1)
        for i, name in enumerate(names):
            assert await store.lease_owner(name) == f"owner {i} ü"
            assert await store.load_checkpoint(name) == i + 1
        assert len(await keys_under(store.url, store.prefix)) == 2 * len(names)


def test_ttls_become_whole_milliseconds_never_shorter() -> None:
    assert milliseconds(0.3) == 300
    assert milliseconds(10.0) == 10_000
    assert milliseconds(0.3001) == 301
    assert milliseconds(0.0000001) == 1
    assert milliseconds(0) == 1
    for bad in (math.inf, math.nan):
        with pytest.raises(StoreError):
            milliseconds(bad)


async def test_large_positions_are_kept_exactly() -> None:
    async with redis_store() as store:
        big = 2**53 - 1
        await store.save_checkpoint("relay:s", big)
        await store.save_checkpoint("relay:s", big - 1)
        assert await store.load_checkpoint("relay:s") == big
        await store.reset_checkpoint("relay:s", 3)
        assert await store.load_checkpoint("relay:s") == 3


# -- sharing and outliving -------------------------------------------------------------


async def test_leases_and_checkpoints_outlive_the_store_instance() -> None:
    url, prefix = server_url(), unique_prefix()
    try:
        first = RedisStore(url, prefix=prefix)
        await first.open()
        assert await first.acquire_lease("relay:s", "a", 60)
        await first.save_checkpoint("relay:s", 7)
        await first.close()  # a crash leaves the same keys: nothing is released on close
        again = RedisStore(url, prefix=prefix)
        await again.open()
        try:
            assert await again.lease_owner("relay:s") == "a"
            assert not await again.acquire_lease("relay:s", "b", 60)
            assert await again.load_checkpoint("relay:s") == 7
        finally:
            await again.close()
    finally:
        await wipe(url, prefix)


async def test_a_reopened_store_coordinates_again() -> None:
    async with redis_store() as store:
        assert await store.acquire_lease("relay:s", "a", 30)
        await store.close()
        with pytest.raises(Unavailable):
            await store.acquire_lease("relay:s", "a", 30)
        for call in (
            store.release_lease("relay:s", "a"),
            store.lease_owner("relay:s"),
            store.load_checkpoint("relay:s"),
            store.save_checkpoint("relay:s", 1),
            store.reset_checkpoint("relay:s", 1),
        ):
            with pytest.raises(Unavailable):
                await call
        await store.open()  # a new client: the scripts are registered on it
        assert await store.acquire_lease("relay:s", "a", 30)
        await store.save_checkpoint("relay:s", 2)
        assert await store.load_checkpoint("relay:s") == 2


# -- failures --------------------------------------------------------------------------


async def test_foreign_values_are_store_errors_not_redis_ones() -> None:
    async with redis_store() as store:
        p = store.prefix.encode()
        admin = aioredis.Redis.from_url(store.url)
        try:
            await admin.hset(p + b"lease:relay:s", "x", "y")
            await admin.set(p + b"checkpoint:relay:s", "not a number")
            await admin.hset(p + b"checkpoint:relay:t", "x", "y")
        finally:
            await admin.aclose()
        for call in (
            store.acquire_lease("relay:s", "a", 30),
            store.release_lease("relay:s", "a"),
            store.lease_owner("relay:s"),
            store.load_checkpoint("relay:s"),
            store.save_checkpoint("relay:s", 1),
            store.load_checkpoint("relay:t"),
            store.save_checkpoint("relay:t", 1),
        ):
            with pytest.raises(StoreError) as caught:
                await call
            assert type(caught.value) is StoreError  # the data is wrong: retrying will not help
        await store.reset_checkpoint("relay:s", 5)  # a reset overwrites what was there
        assert await store.load_checkpoint("relay:s") == 5


async def test_scripts_are_loaded_again_when_the_server_forgot_them(tmp_path: Path) -> None:
    require_redis_server()
    with PrivateRedis(tmp_path, persist=False) as srv:
        async with redis_store(srv.url) as store:
            assert await store.acquire_lease("relay:s", "a", 30)
            await store.save_checkpoint("relay:s", 1)
            admin = aioredis.Redis.from_url(srv.url)
            await admin.script_flush()
            await admin.aclose()
            assert await store.acquire_lease("relay:s", "a", 30)  # NOSCRIPT, loaded, run
            await store.save_checkpoint("relay:s", 2)
            await store.release_lease("relay:s", "a")
            assert await store.lease_owner("relay:s") is None
            assert await store.load_checkpoint("relay:s") == 2


async def test_a_hung_server_is_unavailable_within_the_timeout(tmp_path: Path) -> None:
    require_redis_server()
    with PrivateRedis(tmp_path, persist=False) as srv:
        async with redis_store(srv.url, socket_timeout=0.5) as store:
            assert await store.acquire_lease("relay:s", "a", 30)
            srv.signal(signal.SIGSTOP)
            try:
                for call in (
                    store.acquire_lease("relay:s", "a", 30),
                    store.release_lease("relay:s", "a"),
                    store.lease_owner("relay:s"),
                    store.load_checkpoint("relay:s"),
                    store.save_checkpoint("relay:s", 1),
                    store.reset_checkpoint("relay:s", 1),
                ):
                    started = time.monotonic()
                    with pytest.raises(Unavailable):
                        await call
                    assert time.monotonic() - started < 2.5  # 0.5 s, plus a pool wait at most
            finally:
                srv.signal(signal.SIGCONT)
            assert await store.acquire_lease("relay:s", "a", 30)  # the pool recovers by itself


async def test_a_killed_server_is_unavailable_and_then_recovered(tmp_path: Path) -> None:
    require_redis_server()
    with PrivateRedis(tmp_path) as srv:  # AOF, fsync always
        async with redis_store(srv.url, socket_timeout=1, connect_timeout=0.5) as store:
            assert await store.acquire_lease("relay:s", "a", 60)
            await store.save_checkpoint("relay:s", 9)
            srv.kill()
            with pytest.raises(Unavailable):
                await store.lease_owner("relay:s")
            with pytest.raises(Unavailable):
                await store.save_checkpoint("relay:s", 10)
            srv.start()  # the AOF is replayed; the lease's expiry is absolute, so it stands
            assert await store.lease_owner("relay:s") == "a"
            assert await store.load_checkpoint("relay:s") == 9
            assert await store.acquire_lease("relay:s", "a", 60)
