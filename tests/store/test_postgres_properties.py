"""Random schedules against the PostgreSQL store: no lost update, no duplicate, no skipped position.

The first test runs the shared concurrency property (test_concurrency_properties)
on this store. The second adds what only a shared server has: two stores on one
schema (two daemons) writing at once while a reader tails read_all with a
checkpoint and a small page, as a projection does; it must see every event
exactly once, in one contiguous order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catgad.errors import ConcurrencyError
from catgad.store.postgres import PostgresStore
from tests.contracts.store import event, read_everything
from tests.servers.postgres import postgres_store, schema_on_shared_server, server_url
from tests.store.test_concurrency_properties import Plan, plans, run

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module", autouse=True)
def _server() -> Iterator[None]:
    server_url()  # skip (or fail in CI) before hypothesis starts
    yield


@settings(max_examples=30, deadline=None)
@given(plan=plans)
def test_no_lost_update_no_duplicate(plan: Plan) -> None:
    asyncio.run(run(postgres_store, plan))


@settings(max_examples=15, deadline=None)
@given(
    writers=st.integers(1, 6),
    appends=st.integers(1, 8),
    streams=st.integers(1, 4),
    page=st.integers(1, 7),
    seed=st.integers(0, 2**32),
)
def test_two_daemons_and_a_tailing_reader(
    writers: int, appends: int, streams: int, page: int, seed: int
) -> None:
    with schema_on_shared_server() as (url, schema):
        asyncio.run(_two_daemons(url, schema, writers, appends, streams, page, random.Random(seed)))


async def _two_daemons(
    url: str, schema: str, writers: int, appends: int, streams: int, page: int, rnd: random.Random
) -> None:
    stores = [PostgresStore(url, schema=schema, pool_max=3) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        written: list[str] = []
        done = asyncio.Event()
        seen: list[tuple[int, str]] = []

        async def writer(w: int) -> None:
            store = stores[w % 2]
            for i in range(appends):
                stream = f"S{rnd.randrange(streams)}"
                given = [event(w=w, i=i, k=k) for k in range(rnd.randint(0, 3))]
                while True:
                    version = await store.stream_version(stream)
                    try:
                        await store.append(stream, given, expected_version=version,
                                           command_id=f"{w}-{i}")  # fmt: skip
                        break
                    except ConcurrencyError:
                        await asyncio.sleep(0)
                written.extend(e.id for e in given)

        async def tail() -> None:
            checkpoint = 0
            while True:
                finished = done.is_set()  # read once more after the writers are done
                batch = await stores[1].read_all(after=checkpoint, limit=page)
                seen.extend((e.position or 0, e.id) for e in batch)
                if batch:
                    checkpoint = batch[-1].position or 0
                elif finished:
                    return
                else:
                    await asyncio.sleep(0)

        tailer = asyncio.create_task(tail())
        await asyncio.gather(*(writer(w) for w in range(writers)))
        done.set()
        await tailer
        everything = await read_everything(stores[0])
        assert [(e.position, e.id) for e in everything] == seen, "the tailer skipped or repeated"
        assert sorted(written) == sorted(i for _, i in seen)
        assert [p for p, _ in seen] == list(range(1, len(seen) + 1))
    finally:
        for store in stores:
            await store.close()
