"""Rewrites in place on NATS (catgad migrate) through the overlay, beyond the contract.

Other processes see the rewrite, the normal path pays nothing until there is
one, concurrent appends and rewriters lose nothing, and a batch cut short
leaves whole messages that a second run completes. Real servers: the shared
2.9 and the newest release.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from catgad.envelope import Envelope
from catgad.errors import Unavailable
from catgad.store.nats import NATSStore
from catgad.store.nats_wire import Pending, Wire
from tests.contracts.store import event, read_everything, unplaced
from tests.servers.nats import nats_store, server_url

pytestmark = pytest.mark.nats


@pytest.fixture(params=["2.9", "current"])
def url(request: pytest.FixtureRequest) -> str:
    return server_url(request.param)


@asynccontextmanager
async def twin(store: NATSStore) -> AsyncIterator[NATSStore]:
    """Another process's store on the same log."""
    other = NATSStore(store.url, stream=store.names.stream, subject_prefix=store.names.prefix)
    await other.open()
    try:
        yield other
    finally:
        await other.close()


def upgraded(e: Envelope, **data: object) -> Envelope:
    return dataclasses.replace(e, data={**e.data, **data}, dataschemaversion=2)


async def test_every_read_path_of_another_process_sees_the_rewrite(url: str) -> None:
    async with nats_store(url) as store, twin(store) as other:
        first = await store.append(
            "S", [event(n=1), event(n=2)], expected_version=0, command_id="c"
        )
        assert await other.read("S")  # it has looked: no rewrites yet
        new = upgraded(first.events[1], v=2)
        assert await store.rewrite([new]) == 1
        async with asyncio.timeout(5):  # it looks again within a second
            while (await other.read("S"))[1].data != new.data:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert [e.data for e in await read_everything(other)] == [{"n": 1}, new.data]
        found = await other.find_command("c")
        assert found is not None and found.events[1] == new
        again = await other.append("S", [event()], expected_version=0, command_id="c")
        assert again.duplicate and again.events[1] == new
        async with twin(store) as late:  # opened after the rewrite: sees it at once
            assert (await late.read("S", after=1)) == [new]
            assert await late.read_all(after=first.events[0].position or 0) == [new]


async def test_reads_ask_for_overlay_entries_only_once_there_are_some(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    last_of = Wire.last_of

    async def counted(wire: Wire, stream: str, subjects: list[str]) -> list[object]:
        asked.append(len(subjects))
        return await last_of(wire, stream, subjects)  # type: ignore[return-value]

    monkeypatch.setattr(Wire, "last_of", counted)
    async with nats_store(url) as store:
        result = await store.append("S", [event(), event()], expected_version=0, command_id="c")
        await store.read("S")
        await store.read_all()
        await store.find_command("c")
        assert asked == []
        await store.rewrite([upgraded(result.events[0], x=1)])
        asked.clear()
        await store.read("S")
        await store.read_all()
        assert asked == [1, 1]  # one message each, asked in one go


async def test_a_rewrite_by_version_alone_finds_its_message(url: str) -> None:
    async with nats_store(url) as store:
        for v in range(5):
            await store.append(
                "S", [event(v=v), event(v=v)], expected_version=2 * v, command_id=f"c{v}"
            )
        before = await store.read_all()
        target = dataclasses.replace(upgraded(before[7], y=1), position=None)
        assert await store.rewrite([target]) == 1
        after = await store.read_all()
        assert after == [
            *before[:7],
            dataclasses.replace(target, position=before[7].position),
            *before[8:],
        ]


async def test_appends_and_another_rewriter_meanwhile_lose_nothing(url: str) -> None:
    async with nats_store(url) as store, twin(store) as other:
        first = await store.append(
            "S", [event(i=i) for i in range(4)], expected_version=0, command_id="c0"
        )

        async def appends() -> None:
            for v in range(4, 24):
                await store.append("S", [event(i=v)], expected_version=v, command_id=f"c{v}")

        # two rewriters of one message, each of other events of it, and appends all at once
        await asyncio.gather(
            appends(),
            store.rewrite([upgraded(first.events[0], a=1), upgraded(first.events[2], a=1)]),
            other.rewrite([upgraded(first.events[1], b=1), upgraded(first.events[3], b=1)]),
        )
        stored = await store.read("S")
        assert [e.streamversion for e in stored] == list(range(1, 25))
        assert [e.data for e in stored[:4]] == [
            {"i": 0, "a": 1},
            {"i": 1, "b": 1},
            {"i": 2, "a": 1},
            {"i": 3, "b": 1},
        ]
        assert [e.data for e in stored[4:]] == [{"i": v} for v in range(4, 24)]
        assert unplaced(stored[:4]) == unplaced(await read_everything(store))[:4]


async def test_a_batch_cut_short_leaves_whole_messages_and_runs_again(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with nats_store(url) as store:
        results = [
            await store.append(f"S{i}", [event(i=i)], expected_version=0, command_id=f"c{i}")
            for i in range(3)
        ]
        before = await read_everything(store)
        new = [upgraded(r.events[0], v=2) for r in results]
        send = Wire.send
        sent: list[str] = []

        async def lost_after_the_first(
            wire: Wire, subject: str, payload: bytes, headers: dict[str, str] | None = None
        ) -> Pending:
            if "_rewrites" in subject and headers:  # an entry, not a read of one
                sent.append(subject)
                if len(sent) > 1:  # the connection drops before the second goes out
                    raise Unavailable("nats", "lost the connection")
            return await send(wire, subject, payload, headers)

        monkeypatch.setattr(Wire, "send", lost_after_the_first)
        with pytest.raises(Unavailable):
            await store.rewrite(new)
        monkeypatch.setattr(Wire, "send", send)
        async with asyncio.timeout(5):  # the first entry went out: it lands
            while (half := await read_everything(store))[0] != new[0]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert half == [new[0], *before[1:]]  # one message rewritten, whole; nothing moved
        assert await store.rewrite(new) == 3  # the run again completes it
        assert await read_everything(store) == new
        assert await store.rewrite(new) == 3  # and once more changes nothing
        assert await read_everything(store) == new
