"""LeaseKeeper's wake-ups on the memory store: every waiter of `wait_change` wakes on a change,
and a change that came while the caller was busy elsewhere (after it read `changes`, before
it began to wait) is not missed. That miss once held a reactor's log follower a whole renewal
period (ttl/3, 3.3 s by default) after its lease was taken on start."""

from __future__ import annotations

import asyncio
import time

import pytest

from catgad.store.lease import LeaseKeeper, Sharing
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


# -- Sharing: the workers of one `catgad run --workers N` deal their leases out -------------

SHARED_TTL = 3.0  # a period of 1 s: how long a worker leaves another's share alone


def test_sharing_deals_the_sorted_names_round_robin() -> None:
    first, second = Sharing(0, 2), Sharing(1, 2)
    names = ["relay:s", "projection:b", "projection:a", "saga:x", "projection:a"]
    for sharing in (first, second):
        assert sharing.owns("anything")  # not dealt yet: every lease is its own
        sharing.deal(names)
    assert [first.owns(n) for n in ("projection:a", "projection:b", "relay:s", "saga:x")] == [
        True,
        False,
        True,
        False,
    ]
    assert [second.owns(n) for n in ("projection:a", "projection:b", "relay:s", "saga:x")] == [
        False,
        True,
        False,
        True,
    ]
    with pytest.raises(ValueError):
        Sharing(2, 2)


async def held_by(keepers: list[LeaseKeeper], seconds: float) -> None:
    """Wait until every keeper holds its lease."""
    async with asyncio.timeout(seconds):
        for keeper in keepers:
            while not keeper.held():
                await keeper.wait_change(keeper.period)


async def test_each_worker_takes_its_share_whichever_starts_first() -> None:
    store = await opened()
    names = ["projection:a", "projection:b"]
    workers = [Sharing(0, 2), Sharing(1, 2)]
    keepers: dict[tuple[int, str], LeaseKeeper] = {}
    for number, sharing in enumerate(workers):
        sharing.deal(names)
        for name in names:
            keepers[number, name] = LeaseKeeper(
                store, name, f"worker-{number}", SHARED_TTL, sharing=sharing
            )
    for number in (1, 0):  # the second worker first: it still leaves the first's share alone
        for name in names:
            keepers[number, name].start()
    try:
        await held_by([keepers[0, "projection:a"], keepers[1, "projection:b"]], 5)
        assert await store.lease_owner("projection:a") == "worker-0"
        assert await store.lease_owner("projection:b") == "worker-1"
        # the others asked after their period, found them held, and stand by
        await keepers[1, "projection:a"].wait_change(SHARED_TTL)
        assert not keepers[1, "projection:a"].held() and not keepers[0, "projection:b"].held()
        assert keepers[1, "projection:a"].holder == "worker-0"
    finally:
        for keeper in keepers.values():
            await keeper.stop()


async def test_a_share_no_worker_takes_goes_to_another_after_one_period() -> None:
    store = await opened()
    sharing = Sharing(1, 2)  # worker 0 never starts (gone, or slow)
    sharing.deal(["projection:a", "projection:b"])
    keepers = [
        LeaseKeeper(store, name, "worker-1", SHARED_TTL, sharing=sharing)
        for name in ("projection:a", "projection:b")
    ]
    started = time.monotonic()
    for keeper in keepers:
        keeper.start()
    try:
        await held_by(keepers[1:], 2)  # its own at once
        own = time.monotonic() - started
        await held_by(keepers[:1], 5)  # the other's after a period
        assert own < keepers[0].period <= time.monotonic() - started
    finally:
        for keeper in keepers:
            await keeper.stop()
