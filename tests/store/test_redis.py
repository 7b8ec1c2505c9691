"""The Redis store passes the event store contract against a real server, and survives its faults.

Each test uses its own key prefix on the shared server (deleted afterwards);
the fault tests start their own redis-server on a free port and kill, stop or
restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from catgad.errors import ConcurrencyError, StoreError, Unavailable
from catgad.store.protocol import AppendResult, EventStore, Snapshot
from catgad.store.redis import RedisStore
from tests.contracts.outage import Breakable, StoreOutageContract
from tests.contracts.store import EventStoreContract, event, read_everything, same_result, unplaced
from tests.servers.redis import (
    DroppingProxy,
    PrivateRedis,
    keys_under,
    redis_store,
    require_redis_server,
    server_url,
    unique_prefix,
    wipe,
)
from tests.support.ports import free_port

pytestmark = pytest.mark.redis


class TestRedisStore(EventStoreContract):
    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return redis_store()


class TestRedisStoreOneConnection(EventStoreContract):
    """One connection, one append per pipeline: appends and reads queue for it, never deadlock."""

    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return redis_store(pool_size=1, max_batch=1, max_pipelines=1)


# -- the key space -------------------------------------------------------------


async def test_keys_stay_under_the_prefix() -> None:
    async with redis_store() as store, redis_store() as neighbour:
        await store.append("Order-1", [event(), event()], expected_version=0, command_id="c")
        await store.save_snapshot(Snapshot("Order-1", 2, {"n": 2}))
        p = store.prefix.encode()
        assert await keys_under(store.url, store.prefix) == {
            p + b"all", p + b"position", p + b"commands", p + b"event-ids",
            p + b"stream:Order-1", p + b"snapshot:Order-1",
        }  # fmt: skip
        # another prefix on the same server is another store
        assert await neighbour.read_all() == []
        assert await neighbour.stream_version("Order-1") == 0
        assert await neighbour.find_command("c") is None
    assert await keys_under(store.url, store.prefix) == set()


async def test_odd_stream_names_and_prefixes() -> None:
    names = ["", "a b", "x:y", "stream:z", "*", "[a]?", "ü 注文 🚀", "a\nb"]
    async with redis_store(prefix=f"catgad-test:{unique_prefix()}*[glob]?:") as store:
        for i, name in enumerate(names):
            await store.append(name, [event(i=i)], expected_version=0, command_id=f"c{i}")
            await store.save_snapshot(Snapshot(name, 1, {"i": i}))
        for i, name in enumerate(names):
            assert [e.data for e in await store.read(name)] == [{"i": i}]
            assert await store.stream_version(name) == 1
            assert await store.load_snapshot(name) == Snapshot(name, 1, {"i": i})
        assert [e.subject for e in await store.read_all()] == names
        keys = await keys_under(store.url, store.prefix)
        assert len(keys) == 4 + 2 * len(names)
    assert await keys_under(store.url, store.prefix) == set()


async def test_options_are_checked() -> None:
    with pytest.raises(StoreError):
        RedisStore(prefix="")
    with pytest.raises(StoreError):
        RedisStore("http://127.0.0.1:6379")
    with pytest.raises(StoreError):
        RedisStore(pool_size=0)


# -- sharing and outliving -------------------------------------------------------


async def test_data_outlives_the_store_instance() -> None:
    url, prefix = server_url(), unique_prefix()
    try:
        first = RedisStore(url, prefix=prefix)
        await first.open()
        appended = await first.append("S", [event(), event()], expected_version=0, command_id="c")
        await first.close()
        again = RedisStore(url, prefix=prefix)
        await again.open()
        try:
            assert await again.stream_version("S") == 2
            repeat = await again.append("S", [event()], expected_version=0, command_id="c")
            assert repeat.duplicate and same_result(repeat, appended)
        finally:
            await again.close()
    finally:
        await wipe(url, prefix)


async def test_a_store_can_be_reopened() -> None:
    async with redis_store() as store:
        await store.append("S", [event()], expected_version=0, command_id="a")
        await store.close()
        await store.open()
        await store.open()  # already open: nothing to do
        await store.append("S", [event()], expected_version=1, command_id="b")
        assert await store.stream_version("S") == 2


async def test_two_instances_on_one_prefix_share_it_like_two_daemons() -> None:
    url, prefix = server_url(), unique_prefix()
    async with redis_store(url, prefix) as a, redis_store(url, prefix) as b:

        async def writer(store: RedisStore, name: str) -> None:
            for i in range(30):
                stream = f"S-{i % 3}"
                while True:
                    version = await store.stream_version(stream)
                    try:
                        await store.append(
                            stream, [event()], expected_version=version, command_id=f"{name}{i}"
                        )
                        break
                    except ConcurrencyError:
                        await asyncio.sleep(0)

        await asyncio.gather(*(writer(s, f"{n}{k}-") for n, s in (("a", a), ("b", b))
                               for k in range(4)))  # fmt: skip
        everything = await read_everything(a)
        assert [e.position for e in everything] == list(range(1, 241))
        assert unplaced(await read_everything(b)) == unplaced(everything)
        for s in range(3):
            assert [e.streamversion for e in await b.read(f"S-{s}")] == list(range(1, 81))


async def test_a_large_append_and_paged_reads() -> None:
    async with redis_store() as store:
        many = [event(i=i) for i in range(20_000)]  # past Lua's unpack() limit of ~8000
        result = await store.append("Big", many, expected_version=0, command_id="big")
        assert result.version == 20_000
        assert [e.data["i"] for e in await store.read("Big", after=19_990)] == list(
            range(19_990, 20_000)
        )
        assert len(await read_everything(store, page=3000)) == 20_000
        again = await store.append("Big", [], expected_version=0, command_id="big")
        assert again.duplicate and len(again.events) == 20_000


async def test_many_concurrent_appenders_are_grouped_and_all_answered() -> None:
    async with redis_store(max_batch=64, max_pipelines=2) as store:

        async def aggregate(n: int) -> list[AppendResult]:
            return [
                await store.append(
                    f"A-{n}", [event(n=n, v=v)], expected_version=v, command_id=f"{n}-{v}"
                )
                for v in range(5)
            ]

        results = await asyncio.gather(*(aggregate(n) for n in range(500)))
        assert all(r.version == v + 1 for rs in results for v, r in enumerate(rs))
        everything = await read_everything(store)
        assert [e.position for e in everything] == list(range(1, 2501))


# -- failures ------------------------------------------------------------------------


async def test_no_server_is_unavailable_promptly() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await store.open()
    assert time.monotonic() - started < 3
    with pytest.raises(Unavailable):
        await store.ping()


async def test_a_lost_reply_is_retried_once_and_answered_as_the_callers_own() -> None:
    async with DroppingProxy(int(server_url().rsplit(":", 1)[1].split("/")[0])) as proxy:
        async with redis_store(proxy.url) as store:
            await store.ping()
            proxy.drop_next_reply()
            result = await store.append("S", [event()], expected_version=0, command_id="c")
            assert proxy.dropped == 1  # the script ran, its reply was lost, redis-py sent it again
            assert not result.duplicate and result.version == 1
            assert len(await read_everything(store)) == 1
            # a genuine re-send by a client is still a duplicate
            again = await store.append("S", [event()], expected_version=0, command_id="c")
            assert again.duplicate and same_result(again, result)


async def test_scripts_are_loaded_again_when_the_server_forgot_them(tmp_path: Path) -> None:
    require_redis_server()
    with PrivateRedis(tmp_path, persist=False) as srv:
        async with redis_store(srv.url) as store:
            await store.append("S", [event()], expected_version=0, command_id="a")
            await store.save_snapshot(Snapshot("S", 1, {}))
            admin = aioredis.Redis.from_url(srv.url)
            await admin.script_flush()
            await admin.aclose()
            await store.append("S", [event()], expected_version=1, command_id="b")  # NOSCRIPT
            assert len(await store.read("S")) == 2  # NOSCRIPT in redis-py's own Script
            found = await store.find_command("a")
            assert found is not None and found.version == 1
            await store.save_snapshot(Snapshot("S", 2, {"v": 2}))
            assert await store.load_snapshot("S") == Snapshot("S", 2, {"v": 2})


async def test_a_hung_server_is_unavailable_within_the_timeout(tmp_path: Path) -> None:
    require_redis_server()
    with PrivateRedis(tmp_path, persist=False) as srv:
        async with redis_store(srv.url, socket_timeout=0.5) as store:
            await store.append("S", [event()], expected_version=0, command_id="a")
            srv.signal(signal.SIGSTOP)
            try:
                for call in (
                    store.ping(),
                    store.read("S"),
                    store.append("S", [event()], expected_version=1, command_id="b"),
                ):
                    started = time.monotonic()
                    with pytest.raises(Unavailable):
                        await call
                    assert time.monotonic() - started < 2.5  # 0.5 s, plus a pool wait at most
            finally:
                srv.signal(signal.SIGCONT)
            # "b" may or may not have run before the timeout; a retry settles it exactly once
            retried = await store.append("S", [event()], expected_version=1, command_id="b")
            assert retried.version == 2
            assert [e.streamversion for e in await store.read("S")] == [1, 2]


class TestRedisOutage(StoreOutageContract):
    """A private redis-server with an append-only file fsynced on every write, killed -9."""

    @contextlib.contextmanager
    def server(self) -> Iterator[Breakable]:
        require_redis_server()
        with tempfile.TemporaryDirectory(prefix="catgad-redis-") as directory:
            with PrivateRedis(Path(directory)) as srv:
                yield srv

    def make_store(self, url: str) -> AbstractAsyncContextManager[EventStore]:
        return redis_store(url, socket_timeout=1, connect_timeout=0.5)


async def test_a_full_server_refuses_whole_appends(tmp_path: Path) -> None:
    require_redis_server()
    extra = ["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]
    with PrivateRedis(tmp_path, persist=False, extra=extra) as srv:
        async with redis_store(srv.url) as store:
            acked = 0
            with pytest.raises(Unavailable, match="maxmemory"):
                for i in range(100_000):
                    await store.append(
                        f"S-{i % 7}", [event(pad="x" * 500), event(pad="y" * 500)],
                        expected_version=None, command_id=f"c{i}",
                    )  # fmt: skip
                    acked += 1
            everything = await read_everything(store)
            assert len(everything) == 2 * acked  # nothing of the refused append is stored
            assert [e.position for e in everything] == list(range(1, 2 * acked + 1))
            assert await store.find_command(f"c{acked}") is None


async def test_a_server_that_evicts_keys_is_refused(tmp_path: Path) -> None:
    require_redis_server()
    extra = ["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"]
    with PrivateRedis(tmp_path, persist=False, extra=extra) as srv:
        store = RedisStore(srv.url, prefix=unique_prefix())
        with pytest.raises(StoreError, match="noeviction"):
            await store.open()
        with pytest.raises(Unavailable):  # it stayed closed
            await store.ping()
