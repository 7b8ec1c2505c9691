"""LeaseKeeper's wake-ups on the memory store: every waiter of `wait_change` wakes on a change,
and a change that came while the caller was busy elsewhere (after it read `changes`, before
it began to wait) is not missed. That miss once held a reactor's log follower a whole renewal
period (ttl/3, 3.3 s by default) after its lease was taken on start."""

from __future__ import annotations

import asyncio

from catgad.store.lease import LeaseKeeper
from catgad.store.memory import MemoryStore

TTL = 30.0  # a period of 10 s: a wait that is not woken fails the test's 2 s bound


async def opened() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    return store


async def test_two_waiters_both_wake_when_the_lease_is_taken() -> None:
    keeper = LeaseKeeper(await opened(), "lease-waiters", "me", TTL)
    waiters = [asyncio.create_task(keeper.wait_change(keeper.period)) for _ in range(2)]
    await asyncio.sleep(0)  # both are waiting
    keeper.start()
    try:
        async with asyncio.timeout(2):
            await asyncio.gather(*waiters)
        assert keeper.held()
    finally:
        await keeper.stop()


async def test_a_change_before_the_wait_began_is_not_missed() -> None:
    keeper = LeaseKeeper(await opened(), "lease-since", "me", TTL)
    seen = keeper.changes
    assert not keeper.held()
    keeper.start()  # taken while the caller is busy (a checkpoint read, say)
    try:
        async with asyncio.timeout(2):
            while not keeper.held():
                await keeper.wait_change(keeper.period)
            # another waiter woke on that change and went on: ours still returns at once
            await keeper.wait_change(keeper.period, since=seen)
    finally:
        await keeper.stop()
