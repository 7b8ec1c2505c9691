"""Rewriting events in the Redis store (catgad migrate): the overlay of new bodies over the log.

The contract's rewrite tests run in test_redis.py; these are the Redis
layout's own cases: every read path and every daemon sees a rewrite, the
log's entries themselves never change, appends and other rewrites may run at
the same time (the batch run last wins, whole), and events replaced under a
rewrite (keys deleted and written again) are not rewritten.
Each test uses its own key prefix on the shared server (deleted afterwards).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from catgad.envelope import Envelope
from catgad.errors import ConcurrencyError, StoreError
from catgad.store.protocol import RewritableStore
from catgad.store.redis import RedisStore
from tests.contracts.store import event, read_everything, same_result, unplaced
from tests.servers.redis import keys_under, redis_store, server_url, unique_prefix, wipe

pytestmark = pytest.mark.redis


def upgraded(e: Envelope, **data: Any) -> Envelope:
    return dataclasses.replace(e, data={**e.data, **data}, dataschemaversion=2)


async def raw_log(store: RedisStore) -> list[Any]:
    """The global log's entries as the server holds them, without the overlay."""
    admin = aioredis.Redis.from_url(store.url)
    try:
        return list(await admin.xrange(store.prefix + "all") or [])
    finally:
        await admin.aclose()


async def test_every_read_path_and_every_daemon_sees_a_rewrite() -> None:
    url, prefix = server_url(), unique_prefix()
    async with redis_store(url, prefix) as store, redis_store(url, prefix) as other:
        assert isinstance(store, RewritableStore)
        first = await store.append(
            "S", [event(n=1), event(n=2)], expected_version=0, command_id="a"
        )
        await store.append("T", [event(n=3)], expected_version=0, command_id="b")
        log = await raw_log(store)
        p = prefix.encode()
        assert p + b"rewritten" not in await keys_under(url, prefix)  # nothing until a rewrite

        new = upgraded(first.events[1], n=20)
        assert await store.rewrite([new]) == 1
        assert p + b"rewritten" in await keys_under(url, prefix)
        assert await raw_log(store) == log  # the log is as it was: the overlay is read over it
        for reader in (store, other):
            everything = await read_everything(reader)
            assert [e.data["n"] for e in everything] == [1, 20, 3]
            assert everything[1] == new
            assert [e.position for e in everything] == [1, 2, 3]
            assert [e.data["n"] for e in await reader.read_all(after=1, limit=1)] == [20]
            assert unplaced(await reader.read("S")) == unplaced(everything[:2])
            assert unplaced(await reader.read("S", after=1)) == [
                dataclasses.replace(new, position=None)
            ]
            found = await reader.find_command("a")
            assert found is not None and unplaced(found.events) == unplaced(everything[:2])
            # a client sending the command again gets the events as they read now
            again = await reader.append("S", [event()], expected_version=0, command_id="a")
            assert again.duplicate and same_result(again, found)

        twice = upgraded(new, n=200, again=True)
        assert await other.rewrite([twice]) == 1  # rewriting a rewritten event replaces its body
        assert (await store.read("S", after=1))[0].data == {"n": 200, "again": True}


async def test_appends_go_on_while_events_are_rewritten() -> None:
    async with redis_store() as store:
        streams = [f"S{i}" for i in range(4)]
        for i, stream in enumerate(streams):
            await store.append(stream, [event(i=i, k=k) for k in range(25)],
                               expected_version=0, command_id=f"seed-{i}")  # fmt: skip
        old = await read_everything(store)

        async def appender(name: str) -> int:
            appended = 0
            for k in range(40):
                stream = streams[k % len(streams)]
                while True:
                    version = await store.stream_version(stream)
                    try:
                        await store.append(
                            stream, [event(new=k)], expected_version=version,
                            command_id=f"{name}-{k}",
                        )  # fmt: skip
                        appended += 1
                        break
                    except ConcurrencyError:
                        await asyncio.sleep(0)
            return appended

        async def rewriter() -> None:
            for start in range(0, len(old), 10):
                page = old[start : start + 10]
                assert await store.rewrite([upgraded(e, v=2) for e in page]) == len(page)

        counts = await asyncio.gather(appender("x"), appender("y"), rewriter(), appender("z"))
        everything = await read_everything(store)
        assert [e.position for e in everything] == list(range(1, 100 + 3 * 40 + 1))
        assert sum(c for c in counts if c) == 120
        assert everything[:100] == [upgraded(e, v=2) for e in old]  # nothing moved or lost
        assert all(e.dataschemaversion is None and "v" not in e.data for e in everything[100:])
        for stream in streams:
            versions = [e.streamversion for e in await store.read(stream)]
            assert versions == list(range(1, len(versions) + 1))


async def test_concurrent_rewrites_of_the_same_events_are_each_whole() -> None:
    url, prefix = server_url(), unique_prefix()
    async with redis_store(url, prefix) as a, redis_store(url, prefix) as b:
        stored = (
            await a.append("S", [event(n=n) for n in range(10)], expected_version=0, command_id="c")
        ).events

        async def rewrites(store: RedisStore, who: str) -> None:
            for round_ in range(15):
                batch = [upgraded(e, by=who, round=round_) for e in stored]
                assert await store.rewrite(batch) == len(batch)

        await asyncio.gather(*(rewrites(s, f"{n}{k}") for n, s in (("a", a), ("b", b))
                               for k in range(3)))  # fmt: skip
        final = await read_everything(b)
        assert [e.id for e in final] == [e.id for e in stored]
        # the last batch written is there entirely: no event of it mixed with another batch's
        assert len({(e.data["by"], e.data["round"]) for e in final}) == 1
        assert [e.data["n"] for e in final] == list(range(10))


def _interfering(store: RedisStore, interfere: Callable[[], Awaitable[None]]) -> list[int]:
    """Make `store`'s next rewrite run `interfere` between reading the events and writing them."""
    on = store._connected()
    locate, calls = on.locate, [0]

    async def racing(**kwargs: Any) -> Any:
        found = await locate(**kwargs)
        calls[0] += 1
        if calls[0] == 1:
            await interfere()
        return found

    on.locate = racing  # type: ignore[assignment]
    return calls


async def test_a_rival_rewrite_in_between_is_replaced_whole() -> None:
    url, prefix = server_url(), unique_prefix()
    async with redis_store(url, prefix) as store, redis_store(url, prefix) as rival:
        stored = (
            await store.append("S", [event(n=1), event(n=2)], expected_version=0, command_id="c")
        ).events

        async def interfere() -> None:
            await rival.rewrite([upgraded(e, rival=True) for e in stored])

        calls = _interfering(store, interfere)
        assert await store.rewrite([upgraded(e, ours=True) for e in stored]) == 2
        assert calls == [1]  # made from the log's entries, which the rival left as they were
        assert [e.data for e in await read_everything(rival)] == [
            {"n": 1, "ours": True},
            {"n": 2, "ours": True},
        ]


async def test_events_replaced_in_between_are_not_rewritten() -> None:
    url, prefix = server_url(), unique_prefix()
    async with redis_store(url, prefix) as store:
        stored = (
            await store.append("S", [event(n=1), event(n=2)], expected_version=0, command_id="c")
        ).events

        async def interfere() -> None:  # the keys deleted, and other events at the same places
            await wipe(url, prefix)
            await store.append("S", [event(n=3), event(n=4)], expected_version=0, command_id="d")

        _interfering(store, interfere)
        with pytest.raises(StoreError, match="no longer stored as it was read"):
            await store.rewrite([upgraded(e, ours=True) for e in stored])
        assert [e.data for e in await read_everything(store)] == [{"n": 3}, {"n": 4}]
        assert prefix.encode() + b"rewritten" not in await keys_under(url, prefix)


async def test_a_large_batch_is_one_rewrite() -> None:
    async with redis_store() as store:
        for s in range(10):
            await store.append(f"S{s}", [event(i=i) for i in range(500)],
                               expected_version=0, command_id=f"c{s}")  # fmt: skip
        old = await read_everything(store)
        new = [upgraded(e, v=2) for e in old]
        assert await store.rewrite(new) == 5000
        assert await read_everything(store, page=700) == new
        assert [e.data["i"] for e in await store.read("S3", after=495)] == [495, 496, 497, 498, 499]


async def test_refused_rewrites_write_nothing() -> None:
    async with redis_store() as store:
        stored = (await store.append("S", [event(n=1)], expected_version=0, command_id="c")).events
        good = upgraded(stored[0], n=10)
        for bad in (
            dataclasses.replace(good, streamversion=0),
            dataclasses.replace(good, streamversion=-1),  # not the last one, as an index -1 is
            dataclasses.replace(good, streamversion=2),
            dataclasses.replace(good, subject="Other"),
            dataclasses.replace(good, id="someone-else"),
        ):
            with pytest.raises(StoreError):
                await store.rewrite([bad])
        assert await keys_under(store.url, store.prefix) == {
            store.prefix.encode() + k for k in (b"all", b"position", b"commands", b"event-ids",
                                                b"stream:S")
        }  # fmt: skip
        assert unplaced(await store.read("S")) == unplaced(stored)
