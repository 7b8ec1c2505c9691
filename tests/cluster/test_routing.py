"""Command routing in one process: runtimes sharing a memory hub and store stand in for daemons.

`route: bus` makes the memory bus route as a broker would, so the requesting
and serving sides, the reply format and the error mapping are checked here in
milliseconds; tests/cluster/test_two_daemons.py does the same with real
processes and servers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catgad.app.load import load_config
from catgad.bus.memory import MemoryBus, MemoryHub
from catgad.engine.commands import CommandEngine, CommandResult
from catgad.engine.routing import PROBLEM_TYPE, RESULT_TYPE, CommandSettings, result_of, routes_over
from catgad.envelope import Envelope
from catgad.errors import CatgadError, Unavailable
from catgad.http import create_app
from catgad.model import Config
from catgad.runtime import Runtime
from catgad.store.memory import MemoryStore

CONFIG = Path(__file__).parent / "configs" / "memory.yaml"


class SharedStore(MemoryStore):
    """A memory store that outlives each runtime using it, as a server outlives a daemon."""

    async def close(self) -> None:
        return None


def counter_config(**commands: Any) -> Config:
    config = load_config(CONFIG)
    config.bus.options["commands"] = commands
    return config


@contextlib.asynccontextmanager
async def replica(
    config: Config, store: MemoryStore, hub: MemoryHub
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """One 'daemon': a runtime serving its share of the commands, and an HTTP client to it."""
    async with Runtime.start(config, store=store, bus=MemoryBus(hub), commands=True) as rt:
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            yield rt, client


def served_by(rt: Runtime) -> list[str]:
    """Spy on a runtime's engine: the streams of the commands it runs."""
    seen: list[str] = []
    handle = rt.engine.handle

    async def spy(command: Envelope, **kwargs: Any) -> CommandResult:
        try:
            return await handle(command, **kwargs)
        finally:
            seen.append(str(command.subject))

    rt.engine.handle = spy  # type: ignore[method-assign]
    return seen


def comparable(resp: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """Status, the headers that matter and the body, without what differs between runs."""
    headers = {
        k: resp.headers[k]
        for k in ("content-type", "etag", "location", "retry-after")
        if k in resp.headers
    }
    body = resp.json()
    body.pop("command_id", None)
    for event in body.get("events", []):
        for key in ("id", "time", "correlationid", "causationid"):
            event.pop(key, None)
    return resp.status_code, headers, body


SESSION: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("Add", {"counter_id": "c1", "n": 2}, {}),  # 201: creates the stream
    ("Add", {"counter_id": "c1", "n": 3}, {"Idempotency-Key": "k1"}),  # 200
    ("Add", {"counter_id": "c1", "n": 3}, {"Idempotency-Key": "k1"}),  # duplicate
    ("Add", {"counter_id": "c1", "n": 1}, {"If-Match": '"2"'}),  # 200 at version 3
    ("Add", {"counter_id": "c1", "n": 1}, {"If-Match": "2"}),  # 409 version conflict
    ("Close", {"counter_id": "c2"}, {}),  # 422 precondition
    ("Add", {"counter_id": "c1", "n": 0}, {}),  # 400 schema
    ("Nope", {"counter_id": "c1"}, {}),  # 404 unknown command
    ("Add", {"counter_id": "c1", "n": 1}, {"Idempotency-Key": "k1"}),  # the first result again
    (
        "Add",
        {
            "specversion": "1.0",
            "id": "ce-1",
            "source": "t",
            "type": "Add",
            "data": {"counter_id": "c3", "n": 4},
        },
        {"Content-Type": "application/cloudevents+json"},
    ),
]


async def run_session(client: httpx.AsyncClient) -> list[tuple[int, dict[str, str], Any]]:
    out = []
    for command, body, headers in SESSION:
        resp = await client.post(f"/commands/{command}", json=body, headers=headers)
        out.append(comparable(resp))
    return out


async def test_a_routed_command_answers_exactly_as_a_local_one() -> None:
    hub = MemoryHub()
    async with replica(counter_config(route="local"), SharedStore(), hub) as (local, lc):
        assert not local.router.routed
        expected = await run_session(lc)
    store = SharedStore()
    async with (
        replica(counter_config(route="bus"), store, hub) as (first, client),
        replica(counter_config(route="bus"), store, hub) as (second, _),
    ):
        assert first.router.routed and second.router.routed
        ran = (served_by(first), served_by(second))
        got = await run_session(client)
    assert [g[0] for g in got] == [201, 200, 200, 200, 409, 422, 400, 404, 200, 201]
    assert got == expected
    # all but the 400 and the 404 (refused before routing) went over the bus
    assert len(ran[0]) + len(ran[1]) == 8


async def test_each_stream_is_served_by_one_replica_and_moves_when_it_leaves() -> None:
    hub, store = MemoryHub(), SharedStore()
    config = counter_config(route="bus")
    async with replica(config, store, hub) as (first, client):
        async with replica(config, store, hub) as (second, _):
            by_first, by_second = served_by(first), served_by(second)
            for round_ in range(3):
                sent = [
                    client.post("/commands/Add", json={"counter_id": f"c{i}", "n": 1})
                    for i in range(16)
                ]
                assert all(r.status_code in (200, 201) for r in await asyncio.gather(*sent))
                assert len(by_first) + len(by_second) == 16 * (round_ + 1)
            assert by_first and by_second
            assert not set(by_first) & set(by_second)  # a stream stays with one replica
        # the second replica left: its streams are served by the first now
        before = len(by_first)
        sent = [
            client.post("/commands/Add", json={"counter_id": f"c{i}", "n": 1}) for i in range(16)
        ]
        assert all(r.status_code == 200 for r in await asyncio.gather(*sent))
        assert len(by_first) == before + 16
        for i in range(16):
            assert await store.stream_version(f"Counter-c{i}") == 4


async def test_no_reply_in_time_is_a_503_with_retry_after() -> None:
    hub, store = MemoryHub(), SharedStore()
    release = asyncio.Event()

    async def stuck(command: Envelope) -> Envelope:
        await release.wait()  # past the requester's deadline: nobody reads this reply
        return Envelope(type=PROBLEM_TYPE, data={})

    # a member of the group that never answers holds half of the partitions
    stuck_member = await MemoryBus(hub).serve("commands", "counter-commands", stuck)
    try:
        async with replica(counter_config(route="bus", timeout=0.3), store, hub) as (_, client):
            answers = await asyncio.gather(
                *(
                    client.post("/commands/Add", json={"counter_id": f"c{i}", "n": 1})
                    for i in range(16)
                )
            )
            timed_out = [r for r in answers if r.status_code == 503]
            assert timed_out and len(timed_out) < 16
            problem = timed_out[0].json()
            assert problem["type"].endswith("/unavailable")
            assert "no reply to Add" in problem["detail"]
            assert timed_out[0].headers["retry-after"] == "1"
            release.set()
    finally:
        release.set()
        await stuck_member.stop()


async def test_an_external_producer_gets_its_reply_on_the_bus() -> None:
    hub, store = MemoryHub(), SharedStore()
    async with replica(counter_config(route="bus"), store, hub):
        producer = MemoryBus(hub)  # not catgad: only the topic, the key and a CloudEvent
        command = Envelope(type="Add", data={"counter_id": "x", "n": 5}, source="ext")
        reply = await producer.request("commands", command, key="Counter-x", timeout=5)
        assert reply.type == RESULT_TYPE
        assert reply.extensions["status"] == 201
        assert reply.causationid == command.id
        assert reply.data["version"] == 1 and reply.data["stream"] == "Counter-x"
        assert result_of(reply).events[0].data == {"counter_id": "x", "n": 5}

        stale = Envelope(
            type="Add",
            data={"counter_id": "x", "n": 1},
            source="ext",
            extensions={"expectedversion": 0},
        )
        reply = await producer.request("commands", stale, key="Counter-x", timeout=5)
        assert reply.type == PROBLEM_TYPE
        assert reply.extensions["status"] == 409
        assert reply.data["type"].endswith("/version-conflict")
        assert reply.data["actual_version"] == 1

        again = await producer.request("commands", command, key="Counter-x", timeout=5)
        assert again.data["duplicate"] is True and again.data["version"] == 1
        assert await store.stream_version("Counter-x") == 1


class HangingStore(SharedStore):
    """A store whose appends do not return until released (a server that stopped answering)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()
        self.released.set()

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        await self.released.wait()
        return await super().append(*args, **kwargs)

    async def ping(self) -> None:
        await self.released.wait()


@pytest.mark.parametrize("route", ["local", "bus"])
async def test_a_store_that_hangs_gives_a_503_not_a_hang(route: str) -> None:
    store = HangingStore()
    async with replica(counter_config(route=route, timeout=0.5), store, MemoryHub()) as (_, c):
        store.released.clear()
        async with asyncio.timeout(5):
            resp = await c.post("/commands/Add", json={"counter_id": "h", "n": 1})
        assert resp.status_code == 503
        assert resp.json()["dependency"] == "store (memory)"
        assert resp.headers["retry-after"] == "1"
        async with asyncio.timeout(3):  # readiness gives each dependency 1 s
            ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["dependency"] == "store (memory)"
        store.released.set()
        resp = await c.post("/commands/Add", json={"counter_id": "h", "n": 1})
        assert resp.status_code == 201


def test_settings_are_checked() -> None:
    assert CommandSettings.from_options(None) == CommandSettings()
    assert CommandSettings.from_options({"timeout": 2}).timeout == 2.0
    for bad in ({"timeout": 0}, {"route": "x"}, {"topic": ""}, {"nope": 1}, "x"):
        with pytest.raises(CatgadError):
            CommandSettings.from_options(bad)
    assert not routes_over(MemoryBus(), "auto")  # the in-process bus: commands run here
    assert routes_over(MemoryBus(), "bus")
    assert not routes_over(None, "bus")


async def test_an_undecodable_reply_is_a_502_and_unavailable_stays_503() -> None:
    bad = Envelope(type="something.else", data={})
    with pytest.raises(CatgadError) as info:
        result_of(bad)
    assert info.value.status == 502
    down = Unavailable("store (redis)", "connection refused")
    problem = Envelope(type=PROBLEM_TYPE, data=down.problem("/x"))
    with pytest.raises(CatgadError) as info:
        result_of(problem)
    assert (info.value.status, info.value.slug, info.value.retryable) == (503, "unavailable", True)
    assert info.value.problem("/commands/Add")["dependency"] == "store (redis)"


async def test_a_rejection_is_decided_on_the_stored_state_not_a_stale_cache() -> None:
    """Streams move between replicas, so a replica's cached state may be behind the store."""
    config, store = counter_config(), SharedStore()
    await store.open()
    here, there = CommandEngine(config, store), CommandEngine(config, store)
    with pytest.raises(CatgadError) as info:  # caches "no such counter" (version 0) here
        await here.execute("Close", {"counter_id": "x"})
    assert info.value.status == 422
    await there.execute("Add", {"counter_id": "x", "n": 1})  # the stream moved on elsewhere
    closed = await here.execute("Close", {"counter_id": "x"})
    assert closed.version == 2
    with pytest.raises(CatgadError) as info:  # and a real rejection still is one
        await there.execute("Add", {"counter_id": "x", "n": 1})
    assert info.value.status == 422
