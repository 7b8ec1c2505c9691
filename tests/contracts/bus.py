"""The bus contract: every Bus passes these; what is not tested here is not promised.

Subclass BusContract once per backend (as Test...) and implement three hooks:
`namespace()` gives a fresh, isolated namespace (a subject/topic prefix) and
removes what the broker holds for it afterwards; `make_bus(ns, **options)`
opens a bus in it (two buses in one namespace are two daemons sharing a
broker); `inject_raw()` puts bytes on a topic as a foreign producer would.
What a backend may lack is a Capability, and the tests that need one say so.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

import pytest

from catgad.bus.protocol import Bus, Capability, Handler, Subscription
from catgad.envelope import Envelope
from catgad.errors import Unavailable

WAIT = 30.0  # seconds a condition may take (a Kafka group rebalance is the slowest)


def message(key: str, n: int, **data: Any) -> Envelope:
    return Envelope(type="Counted", data={"key": key, "n": n, **data}, subject=key, source="tests")


class Inbox:
    """What one handler was given; conditions on it can be awaited."""

    def __init__(self, fail: Callable[[Envelope, int], bool] | None = None) -> None:
        self.got: list[Envelope] = []  # handled successfully, in order
        self.attempts: dict[str, int] = defaultdict(int)
        self.fail = fail  # (envelope, attempt) -> raise?
        self.changed = asyncio.Event()

    async def __call__(self, envelope: Envelope) -> None:
        self.attempts[envelope.id] += 1
        self.changed.set()
        if self.fail and self.fail(envelope, self.attempts[envelope.id]):
            raise RuntimeError(f"handler refuses {envelope.data} this time")
        self.got.append(envelope)

    def ids(self) -> list[str]:
        return [e.id for e in self.got]

    def numbers(self, key: str) -> list[int]:
        return [e.data["n"] for e in self.got if e.data["key"] == key]


async def until(
    condition: Callable[[], bool],
    *inboxes: Inbox,
    timeout: float = WAIT,  # noqa: ASYNC109 - a test's patience, not a call's
) -> None:
    """Wait until `condition()` holds, re-checking whenever an inbox changes."""
    async with asyncio.timeout(timeout):
        while not condition():
            for inbox in inboxes:
                inbox.changed.clear()
            if condition():
                return
            waits = [asyncio.ensure_future(i.changed.wait()) for i in inboxes]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()


def in_order_per_key(handled: list[Envelope]) -> bool:
    """Each key's numbers, taking first deliveries only, are 0, 1, 2, ... with no gap."""
    seen: set[str] = set()
    nxt: dict[str, int] = defaultdict(int)
    for e in handled:
        if e.id in seen:
            continue
        seen.add(e.id)
        if e.data["n"] != nxt[e.data["key"]]:
            return False
        nxt[e.data["key"]] += 1
    return True


def increasing_per_key(handled: list[Envelope]) -> bool:
    """Each key's numbers, taking first deliveries only, only go up (gaps allowed): what one
    member of a group sees when the key's other messages may go to other members."""
    seen: set[str] = set()
    last: dict[str, int] = {}
    for e in handled:
        if e.id in seen:
            continue
        seen.add(e.id)
        key, n = e.data["key"], e.data["n"]
        if n <= last.get(key, -1):
            return False
        last[key] = n
    return True


async def publish_keys(bus: Bus, topic: str, keys: list[str], per_key: int) -> list[Envelope]:
    """Each key's messages one after another; the keys concurrently."""
    sent: list[Envelope] = []

    async def one_key(key: str) -> None:
        for n in range(per_key):
            env = message(key, n)
            await bus.publish(topic, env, key=key)
            sent.append(env)

    await asyncio.gather(*(one_key(k) for k in keys))
    return sent


class BusContract(abc.ABC):
    """Subclass per backend (as Test...) and implement the hooks."""

    quiet: ClassVar[float] = 0.5  # how long to watch for a message that must not come

    @abc.abstractmethod
    def namespace(self) -> AbstractAsyncContextManager[str]:
        """A fresh namespace; what the broker keeps for it is removed on exit."""

    @abc.abstractmethod
    def make_bus(self, namespace: str, **options: Any) -> AbstractAsyncContextManager[Bus]:
        """An opened bus in `namespace` (fast test timings), closed on exit."""

    @abc.abstractmethod
    async def inject_raw(self, bus: Bus, topic: str, key: str, raw: bytes) -> None:
        """Put `raw` on `topic` under `key`, bypassing the envelope codec."""

    def need(self, bus: Bus, capability: Capability) -> None:
        if capability not in bus.capabilities:
            pytest.skip(f"{bus.name} bus lacks {capability}")

    # -- publish and deliver ---------------------------------------------------

    async def test_is_a_bus(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            assert isinstance(bus, Bus)
            assert isinstance(bus.name, str) and bus.name
            assert isinstance(bus.capabilities, Capability)
            await bus.ping()

    async def test_a_group_gets_what_was_published_before_it_joined(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            sent = [message("k", n, text="ü 注文") for n in range(3)]
            for env in sent:
                await bus.publish("orders", env, key="k")
            inbox = Inbox()
            sub = await bus.subscribe("orders", "g", inbox)
            assert isinstance(sub, Subscription)
            await until(lambda: len(inbox.got) >= 3, inbox)
            assert inbox.got == sent
            await sub.stop()

    async def test_order_per_key_with_keys_published_concurrently(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            inbox = Inbox()
            await bus.subscribe("t", "g", inbox)
            sent = await publish_keys(bus, "t", [f"Order-{i}" for i in range(12)], 15)
            await until(lambda: len(set(inbox.ids())) >= len(sent), inbox)
            assert set(inbox.ids()) == {e.id for e in sent}
            assert in_order_per_key(inbox.got)

    async def test_a_failing_handler_gets_the_message_again_before_later_ones(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            # the second message of key "a" fails twice, then succeeds
            inbox = Inbox(fail=lambda e, attempt: e.data == {"key": "a", "n": 1} and attempt <= 2)
            await bus.subscribe("t", "g", inbox)
            sent = await publish_keys(bus, "t", ["a", "b", "c"], 6)
            await until(lambda: len(set(inbox.ids())) >= len(sent), inbox)
            assert inbox.numbers("a") == list(range(6))
            assert in_order_per_key(inbox.got)
            failing = next(e for e in sent if e.data == {"key": "a", "n": 1})
            assert inbox.attempts[failing.id] == 3

    async def test_two_groups_each_get_every_message(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            first, second = Inbox(), Inbox()
            await bus.subscribe("t", "projector", first)
            await bus.subscribe("t", "saga", second)
            sent = await publish_keys(bus, "t", ["x", "y"], 10)
            everything = {e.id for e in sent}
            await until(lambda: everything <= set(first.ids()), first)
            await until(lambda: everything <= set(second.ids()), second)
            assert in_order_per_key(first.got) and in_order_per_key(second.got)

    async def test_members_of_one_group_share_the_messages(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as one, self.make_bus(ns) as two:
            self.need(one, Capability.SPLITS_GROUP)
            a, b = Inbox(), Inbox()
            # The group's order is the order in which its members handled the messages: a
            # key's next message is handed out only once the one before was done with, so
            # appending as each handler returns records that order.
            group: list[Envelope] = []

            def member(inbox: Inbox) -> Handler:
                async def handle(envelope: Envelope) -> None:
                    await inbox(envelope)
                    group.append(envelope)

                return handle

            await one.subscribe("t", "g", member(a))
            await two.subscribe("t", "g", member(b))
            sent: list[Envelope] = []
            # waves until both are busy: a broker may take a moment to give the second a share
            for wave in range(40):
                sent += await publish_keys(one, "t", [f"k{wave}-{i}" for i in range(8)], 3)
                everything = {e.id for e in sent}
                await until(lambda: everything <= set(a.ids()) | set(b.ids()), a, b)  # noqa: B023
                if a.got and b.got:
                    break
            assert a.got and b.got, "one member got nothing"
            assert in_order_per_key(group)
            # A key may move between members ("one member at a time", not "always the same
            # one": the NATS bus gives a partition's next message to whichever member is
            # free), so a member may see a key's 0 and 2 while the other handled its 1.
            for inbox in (a, b):
                assert increasing_per_key(inbox.got)

    async def test_when_a_member_leaves_the_other_gets_the_rest(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as one, self.make_bus(ns) as two:
            self.need(one, Capability.SPLITS_GROUP)
            a, b = Inbox(), Inbox()
            sub_a = await one.subscribe("t", "g", a)
            await two.subscribe("t", "g", b)
            keys = [f"k{i}" for i in range(10)]
            first = await publish_keys(one, "t", keys, 3)
            await until(lambda: {e.id for e in first} <= set(a.ids()) | set(b.ids()), a, b)
            await sub_a.stop()
            later = [message(k, n) for n in range(3, 6) for k in keys]
            for env in later:
                await one.publish("t", env, key=env.data["key"])
            await until(lambda: {e.id for e in later} <= set(b.ids()), b)
            handled = a.got + [e for e in b.got if e.id not in set(a.ids())]
            assert {e.id for e in first + later} == {e.id for e in handled}
            for k in keys:  # b's share of each key continues where the key stood
                assert [n for n in b.numbers(k) if n >= 3] == [3, 4, 5]

    async def test_acked_messages_are_not_delivered_again_after_a_restart(self) -> None:
        async with self.namespace() as ns:
            async with self.make_bus(ns) as bus:
                before = Inbox()
                sub = await bus.subscribe("t", "g", before)
                sent = await publish_keys(bus, "t", ["a", "b"], 4)
                await until(lambda: len(before.got) >= len(sent), before)
                await sub.stop()
                later = [message("a", 4), message("b", 4)]
                for env in later:
                    await bus.publish("t", env, key=env.data["key"])
            async with self.make_bus(ns) as bus:  # another process, the same group
                after = Inbox()
                await bus.subscribe("t", "g", after)
                await until(lambda: len(after.got) >= 2, after)
                await asyncio.sleep(self.quiet)  # give a wrong redelivery the chance to show
                assert sorted(after.ids()) == sorted(e.id for e in later)

    async def test_stop_finishes_the_message_in_hand(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            entered, release = asyncio.Event(), asyncio.Event()
            done: list[str] = []

            async def slow(envelope: Envelope) -> None:
                entered.set()
                await release.wait()
                done.append(envelope.id)

            sub = await bus.subscribe("t", "g", slow)
            await bus.publish("t", message("k", 0), key="k")
            async with asyncio.timeout(WAIT):
                await entered.wait()
            stopping = asyncio.create_task(sub.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()
            release.set()
            await stopping
            await sub.stop()  # twice is harmless
            assert len(done) == 1
            again = Inbox()
            await bus.subscribe("t", "g", again)
            await bus.publish("t", message("k", 1), key="k")
            await until(lambda: len(again.got) >= 1, again)
            await asyncio.sleep(self.quiet)
            assert again.numbers("k") == [1]

    # -- names and isolation ---------------------------------------------------

    async def test_odd_topic_group_and_key_names(self) -> None:
        keys = ["a.b", "*", ">", " ", "ü 注文", "", "x_2E", "a/b\\c", "%00", "__"]
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            inbox = Inbox()
            await bus.subscribe("orders.events v2", "projector A.*", inbox)
            sent = await publish_keys(bus, "orders.events v2", keys, 3)
            await until(lambda: len(inbox.got) >= len(sent), inbox)
            assert {e.id for e in sent} == set(inbox.ids())
            assert in_order_per_key(inbox.got)

    async def test_namespaces_and_topics_are_isolated(self) -> None:
        async with self.namespace() as ns1, self.namespace() as ns2:
            async with self.make_bus(ns1) as one, self.make_bus(ns2) as two:
                a, b, other_topic = Inbox(), Inbox(), Inbox()
                await one.subscribe("t", "g", a)
                await two.subscribe("t", "g", b)
                await one.subscribe("t2", "g", other_topic)
                await one.publish("t", message("k", 0), key="k")
                await two.publish("t", message("k", 0, mine=2), key="k")
                await until(lambda: bool(a.got and b.got), a, b)
                await asyncio.sleep(self.quiet)
                assert len(a.got) == len(b.got) == 1 and b.got[0].data["mine"] == 2
                assert other_topic.got == []

    # -- messages that are not CloudEvents ---------------------------------------

    async def test_undecodable_messages_go_to_on_undecodable_and_are_acked(self) -> None:
        async with self.namespace() as ns:
            bad = [b"not json", b'{"hello": "world"}', b"\xff\xfe", b'{"specversion": "0.3"}']
            async with self.make_bus(ns) as bus:
                seen: list[tuple[bytes, str]] = []
                inbox = Inbox()

                async def on_undecodable(raw: bytes, reason: str) -> None:
                    seen.append((raw, reason))

                await bus.subscribe("t", "g", inbox, on_undecodable=on_undecodable)
                for raw in bad:
                    await self.inject_raw(bus, "t", "k", raw)
                await bus.publish("t", message("k", 0), key="k")
                await until(lambda: len(inbox.got) >= 1, inbox)
                assert [raw for raw, _ in seen] == bad
                assert all(reason for _, reason in seen)
            async with self.make_bus(ns) as bus:
                again = Inbox()
                late: list[bytes] = []

                async def record(raw: bytes, reason: str) -> None:
                    late.append(raw)

                await bus.subscribe("t", "g", again, on_undecodable=record)
                await bus.publish("t", message("k", 1), key="k")
                await until(lambda: len(again.got) >= 1, again)
                assert late == [] and again.numbers("k") == [1]

    async def test_on_undecodable_failing_keeps_the_message(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            calls: list[bytes] = []
            inbox = Inbox()

            async def flaky(raw: bytes, reason: str) -> None:
                calls.append(raw)
                if len(calls) == 1:
                    raise RuntimeError("dead-letter stream is down")

            await bus.subscribe("t", "g", inbox, on_undecodable=flaky)
            await self.inject_raw(bus, "t", "k", b"garbage")
            await bus.publish("t", message("k", 0), key="k")
            await until(lambda: len(inbox.got) >= 1, inbox)
            assert calls == [b"garbage", b"garbage"]

    async def test_without_on_undecodable_the_next_message_still_comes(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            inbox = Inbox()
            await bus.subscribe("t", "g", inbox)
            await self.inject_raw(bus, "t", "k", b"\x00garbage")
            await bus.publish("t", message("k", 0), key="k")
            await until(lambda: len(inbox.got) >= 1, inbox)

    # -- request / reply ---------------------------------------------------------

    async def _serve_counting(
        self, bus: Bus, active: dict[str, int], overlaps: list[str], served: list[Envelope]
    ) -> Subscription:
        async def responder(command: Envelope) -> Envelope:
            key = command.data["key"]
            active[key] += 1
            if active[key] > 1:
                overlaps.append(key)
            await asyncio.sleep(0.002)  # long enough for an overlap to show
            active[key] -= 1
            served.append(command)
            return Envelope(type="Done", data={"echo": command.data}, causationid=command.id)

        return await bus.serve("commands", "workers", responder)

    async def test_request_gets_the_reply_of_one_server(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as one, self.make_bus(ns) as two:
            self.need(one, Capability.REQUEST_REPLY)
            active: dict[str, int] = defaultdict(int)
            overlaps: list[str] = []
            served: list[Envelope] = []
            await self._serve_counting(one, active, overlaps, served)
            await self._serve_counting(two, active, overlaps, served)

            async def client(key: str) -> None:
                for n in range(4):
                    command = message(key, n)
                    reply = await one.request("commands", command, key=key, timeout=WAIT)
                    assert reply.causationid == command.id and reply.data["echo"] == command.data

            await asyncio.gather(*(client(f"Order-{i}") for i in range(8)))
            assert len({c.id for c in served}) == 32 and overlaps == []
            assert in_order_per_key(served)

    async def test_requests_for_one_key_are_served_one_at_a_time(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as one, self.make_bus(ns) as two:
            self.need(one, Capability.REQUEST_REPLY)
            active: dict[str, int] = defaultdict(int)
            overlaps: list[str] = []
            served: list[Envelope] = []
            await self._serve_counting(one, active, overlaps, served)
            await self._serve_counting(two, active, overlaps, served)
            commands = [message(f"k{i % 3}", i // 3) for i in range(24)]
            replies = await asyncio.gather(
                *(one.request("commands", c, key=c.data["key"], timeout=WAIT) for c in commands)
            )
            assert [r.causationid for r in replies] == [c.id for c in commands]
            assert overlaps == []

    async def test_request_without_a_server_is_unavailable_in_time(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            self.need(bus, Capability.REQUEST_REPLY)
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await bus.request("commands", message("k", 0), key="k", timeout=0.5)
            assert time.monotonic() - started < 5

    async def test_a_failing_responder_is_retried_and_an_expired_command_skipped(self) -> None:
        async with self.namespace() as ns, self.make_bus(ns) as bus:
            self.need(bus, Capability.REQUEST_REPLY)
            with pytest.raises(Unavailable):  # nobody serves yet: this one expires
                await bus.request("commands", message("k", 0), key="k", timeout=0.3)
            await asyncio.sleep(0.35)
            calls: list[Envelope] = []

            async def responder(command: Envelope) -> Envelope:
                calls.append(command)
                if len(calls) == 1:
                    raise RuntimeError("store is down for a moment")
                return Envelope(type="Done", data={}, causationid=command.id)

            await bus.serve("commands", "workers", responder)
            command = message("k", 1)
            reply = await bus.request("commands", command, key="k", timeout=WAIT)
            assert reply.causationid == command.id
            assert [c.data["n"] for c in calls] == [1, 1]  # the expired command was skipped
