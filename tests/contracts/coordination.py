"""The coordination contract: leases and checkpoints every store with Coordination must honour.

Subclass CoordinationContract once per backend (as Test...) and implement two
hooks:

- make_store(): an async context manager yielding an opened store isolated
  from every other test (own file, database schema, key prefix, bucket);
- connect_peer(store): another opened handle on the *same* storage, as a
  second daemon sharing it would hold: its own connection(s), nothing shared
  in memory with `store` (a store that lives in one process yields `store`).

The tests treat `store` and its peer as two daemons. Expiry is observed by
awaiting the condition with a deadline, never by sleeping a fixed time, and
TTLs are short (TTL below) so the suite stays fast; a backend whose clock or
expiry has coarser resolution may raise TTL in its subclass.
"""

from __future__ import annotations

import abc
import asyncio
import random
import time
from contextlib import AbstractAsyncContextManager

from catgad.store.protocol import Coordination
from tests.support.waiting import eventually_async

DEADLINE = 10.0  # seconds any awaited condition may take before the test fails


class CoordinationContract(abc.ABC):
    """Subclass per backend and implement make_store and connect_peer."""

    TTL = 0.3  # seconds: long enough for a renewal round trip, short enough to wait out

    @abc.abstractmethod
    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        """An opened store, isolated per test, closed on exit."""

    @abc.abstractmethod
    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        """Another opened handle on the same storage as `store` (another daemon's view)."""

    async def test_is_coordination(self) -> None:
        async with self.make_store() as store:
            assert isinstance(store, Coordination)

    # -- leases ------------------------------------------------------------

    async def test_a_free_lease_is_taken_and_renewed_by_its_owner(self) -> None:
        async with self.make_store() as store:
            assert await store.lease_owner("relay:s") is None
            assert await store.acquire_lease("relay:s", "a", self.TTL)
            assert await store.lease_owner("relay:s") == "a"
            assert await store.acquire_lease("relay:s", "a", self.TTL)  # renewal
            assert await store.lease_owner("relay:s") == "a"

    async def test_a_lease_is_exclusive_between_daemons(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            assert await store.acquire_lease("relay:s", "a", 30)
            assert not await peer.acquire_lease("relay:s", "b", 30)
            assert not await store.acquire_lease("relay:s", "b", 30)
            assert await peer.lease_owner("relay:s") == "a"
            assert await store.lease_owner("relay:s") == "a"

    async def test_only_one_of_many_concurrent_owners_wins(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            handles = [store, peer]
            attempts = [
                handles[i % 2].acquire_lease("relay:s", f"owner-{i}", 30) for i in range(16)
            ]
            won = [f"owner-{i}" for i, ok in enumerate(await asyncio.gather(*attempts)) if ok]
            assert len(won) == 1
            assert await peer.lease_owner("relay:s") == won[0]

    async def test_renewal_keeps_the_lease_past_its_first_ttl(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            assert await store.acquire_lease("relay:s", "a", self.TTL)
            until = time.monotonic() + 3 * self.TTL
            while time.monotonic() < until:
                await asyncio.sleep(self.TTL / 4)  # the renewal period of a real holder
                assert await store.acquire_lease("relay:s", "a", self.TTL)
                assert not await peer.acquire_lease("relay:s", "b", self.TTL)
            assert await peer.lease_owner("relay:s") == "a"

    async def test_an_expired_lease_goes_to_another_daemon(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            taken = time.monotonic()
            assert await store.acquire_lease("relay:s", "a", self.TTL)
            await eventually_async(
                lambda: peer.acquire_lease("relay:s", "b", 30),
                DEADLINE,
                "b to take the lease",
                interval=0.01,
            )
            # not before the TTL (less a little for clocks ticking in milliseconds)
            assert time.monotonic() - taken >= self.TTL * 0.8
            assert await store.lease_owner("relay:s") == "b"
            assert not await store.acquire_lease("relay:s", "a", self.TTL)

    async def test_an_expired_lease_has_no_owner_and_is_renewable_by_its_holder(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            assert await store.acquire_lease("relay:s", "a", self.TTL)

            async def vacant() -> bool:
                return await peer.lease_owner("relay:s") is None

            await eventually_async(vacant, DEADLINE, "the lease to be vacant", interval=0.01)
            # nobody took it meanwhile: the late holder may carry on
            assert await store.acquire_lease("relay:s", "a", 30)
            assert await peer.lease_owner("relay:s") == "a"

    async def test_release_frees_the_lease_at_once(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            assert await store.acquire_lease("relay:s", "a", 30)
            await store.release_lease("relay:s", "a")
            assert await peer.lease_owner("relay:s") is None
            assert await peer.acquire_lease("relay:s", "b", 30)

    async def test_only_the_holder_can_release(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            await peer.release_lease("relay:s", "b")  # nothing to release: no error
            assert await store.acquire_lease("relay:s", "a", 30)
            await peer.release_lease("relay:s", "b")
            assert await store.lease_owner("relay:s") == "a"
            assert not await peer.acquire_lease("relay:s", "b", 30)

    async def test_leases_are_independent_by_name(self) -> None:
        async with self.make_store() as store:
            assert await store.acquire_lease("relay:orders", "a", 30)
            assert await store.acquire_lease("relay:billing", "b", 30)
            assert await store.lease_owner("relay:orders") == "a"
            assert await store.lease_owner("relay:billing") == "b"
            await store.release_lease("relay:orders", "a")
            assert await store.lease_owner("relay:billing") == "b"

    # -- checkpoints -------------------------------------------------------

    async def test_an_unknown_checkpoint_is_zero(self) -> None:
        async with self.make_store() as store:
            assert await store.load_checkpoint("relay:s") == 0

    async def test_checkpoints_round_trip_between_daemons(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            await store.save_checkpoint("relay:s", 42)
            assert await store.load_checkpoint("relay:s") == 42
            assert await peer.load_checkpoint("relay:s") == 42
            await peer.save_checkpoint("relay:s", 43)
            assert await store.load_checkpoint("relay:s") == 43

    async def test_saving_never_moves_a_checkpoint_back(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            await store.save_checkpoint("relay:s", 10)
            await peer.save_checkpoint("relay:s", 5)  # a late save by a former holder
            assert await store.load_checkpoint("relay:s") == 10

    async def test_concurrent_saves_keep_the_highest(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            positions = list(range(1, 41))
            random.Random(7).shuffle(positions)
            handles = [store, peer]
            await asyncio.gather(
                *(handles[i % 2].save_checkpoint("relay:s", p) for i, p in enumerate(positions))
            )
            assert await store.load_checkpoint("relay:s") == 40

    async def test_reset_sets_a_checkpoint_backwards(self) -> None:
        async with self.make_store() as store, self.connect_peer(store) as peer:
            await store.reset_checkpoint("projection:p", 7)  # reset of an unknown one sets it
            assert await peer.load_checkpoint("projection:p") == 7
            await store.save_checkpoint("projection:p", 30)
            await store.reset_checkpoint("projection:p")
            assert await peer.load_checkpoint("projection:p") == 0
            await peer.reset_checkpoint("projection:p", 3)
            assert await store.load_checkpoint("projection:p") == 3

    async def test_checkpoints_are_independent_by_name_and_from_leases(self) -> None:
        async with self.make_store() as store:
            await store.save_checkpoint("relay:orders", 5)
            await store.save_checkpoint("relay:billing", 9)
            assert await store.acquire_lease("relay:orders", "a", 30)
            assert await store.load_checkpoint("relay:orders") == 5
            assert await store.load_checkpoint("relay:billing") == 9
            assert await store.load_checkpoint("relay") == 0

    # -- isolation ---------------------------------------------------------

    async def test_stores_made_for_other_tests_see_nothing_of_each_other(self) -> None:
        async with self.make_store() as one, self.make_store() as two:
            assert await one.acquire_lease("relay:s", "a", 30)
            await one.save_checkpoint("relay:s", 8)
            assert await two.lease_owner("relay:s") is None
            assert await two.load_checkpoint("relay:s") == 0
            assert await two.acquire_lease("relay:s", "b", 30)
