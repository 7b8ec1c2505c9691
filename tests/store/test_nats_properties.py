"""Random schedules of concurrent writers and re-sent commands against the NATS store.

The same plans and checks as test_concurrency_properties (one to three
concurrent senders per command, expected versions read just before, fresh or
re-sent event ids), run on NATS 2.9 and the newest server, and once more with
a duplicate window of one second and waits, so that re-sends also arrive after
JetStream forgot the Msg-Id and only the claims can recognise them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from hypothesis import HealthCheck, given, settings

from catgad.store.protocol import EventStore
from tests.servers.nats import SERVERS, nats_store, server_url
from tests.store.test_concurrency_properties import Plan, plans, run

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("server", SERVERS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
def test_no_lost_update_no_duplicate(server: str, plan: Plan) -> None:
    url = server_url(server)

    def make() -> AbstractAsyncContextManager[EventStore]:
        return nats_store(url)

    asyncio.run(run(make, plan))


@pytest.mark.parametrize("server", SERVERS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
def test_resends_after_the_duplicate_window(server: str, plan: Plan) -> None:
    url = server_url(server)

    @asynccontextmanager
    async def make() -> AsyncIterator[EventStore]:
        async with nats_store(url, duplicate_window=1.0, timeout=0.25) as store:
            yield _Slow(store, plan.rnd)

    asyncio.run(run(make, plan))


class _Slow:
    """The store, with some appends held back past the duplicate window."""

    def __init__(self, store: EventStore, rnd: random.Random) -> None:
        self._store = store
        self._rnd = random.Random(rnd.random())

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def append(self, *args: object, **kwargs: object) -> object:
        if self._rnd.random() < 0.2:
            await asyncio.sleep(1.1)
        return await self._store.append(*args, **kwargs)  # type: ignore[arg-type]
