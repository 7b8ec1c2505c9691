"""The process suite, unchanged on every store: memory, SQLite, PostgreSQL, Redis and NATS.

The fulfilment example runs in-process (engine, router, process runner) with a clock the
tests move: timers are passed, not waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from catgad.app.load import load_config
from catgad.consumer.clock import ManualClock
from catgad.consumer.settings import LeasedSettings
from catgad.engine.commands import CommandEngine
from catgad.errors import NotAwaitingDecision, ProcessNotFound
from catgad.model import Config
from catgad.processes.runner import ProcessRunner
from catgad.processes.state import ProcessState, command_id
from catgad.store.protocol import EventStore
from tests.helpers.daemon import REPO
from tests.helpers.stores import BACKEND_PARAMS, BACKENDS
from tests.processes.wiring import wired_runner

FULFILMENT = REPO / "config" / "examples" / "fulfilment.yaml"
DAY = 86_400.0
pytestmark = pytest.mark.parametrize("backend", BACKEND_PARAMS)


@dataclass
class Shop:
    config: Config
    store: EventStore
    engine: CommandEngine
    runner: ProcessRunner
    clock: ManualClock
    registry: CollectorRegistry

    async def state(self, order_id: str, state: str, within: float = 20) -> ProcessState:
        async with asyncio.timeout(within):
            return await self.runner.settled("Fulfilment", order_id, state)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def shop(
    store: EventStore, config: Config, *, owner: str = "d1", drive: bool = True
) -> AsyncIterator[Shop]:
    clock, registry = ManualClock(), CollectorRegistry()
    engine, runner = wired_runner(
        config,
        store,
        owner=owner,
        clock=clock,
        registry=registry,
        settings=LeasedSettings(lease_ttl=3.0, poll_interval=0.05),
        drive=drive,
    )
    await runner.start()
    try:
        yield Shop(config, store, engine, runner, clock, registry)
    finally:
        await runner.stop()


@pytest.fixture
def config() -> Config:
    return load_config(FULFILMENT, env={})


async def test_an_order_paid_in_time_is_shipped(
    backend: str, tmp_path: Path, config: Config
) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, config) as s:
        await s.engine.execute("PlaceOrder", {"order_id": "o1", "total": 2500})
        await s.state("o1", "awaiting_payment")
        await s.engine.execute("CapturePayment", {"order_id": "o1", "amount": 2500})
        done = await s.state("o1", "done")  # shipped: BookShipment sent, ShipmentBooked back
        assert done.status == "finished" and done.data == {"total": 2500, "paid": 2500}
        shipment = await store.read("Shipment-o1")
        sent = command_id("Process-Fulfilment-o1", "enter", 2, 0)
        assert [(e.type, e.causationid, e.correlationid) for e in shipment] == [
            ("ShipmentBooked", sent, "Process-Fulfilment-o1")
        ]
        booked = next(c for c in done.sent if c["command"] == "BookShipment")
        payment = (await store.read("Payment-o1"))[0]
        assert booked["cause"] == payment.id, "the command's causation: the triggering event"
        assert s.metric("catgad_process_transitions_total", process="Fulfilment", by="event") == 2


async def test_a_timer_fires_once_and_never_early(
    backend: str, tmp_path: Path, config: Config
) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, config) as s:
        await s.engine.execute("PlaceOrder", {"order_id": "o2", "total": 2500})
        state = await s.state("o2", "awaiting_payment")
        assert state.timer is not None
        s.clock.advance(DAY - 1)
        await asyncio.sleep(0.05)  # the timer loop had its chance: it must not fire
        assert (await s.runner.instance("Fulfilment", "o2")).state == "awaiting_payment"
        s.clock.advance(1)
        expired = await s.state("o2", "expired")
        assert expired.status == "finished"
        cancelled = [e for e in await store.read("Order-o2") if e.type == "OrderCancelled"]
        assert len(cancelled) == 1
        s.clock.advance(10 * DAY)
        await asyncio.sleep(0.05)
        fired = [
            h
            for h in (await s.runner.instance("Fulfilment", "o2")).history
            if h["decision"] == "TimerFired"
        ]
        assert len(fired) == 1
        assert s.metric("catgad_process_timers_fired_total", process="Fulfilment") == 1


async def test_approve_reject_and_409(backend: str, tmp_path: Path, config: Config) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, config) as s:
        for order in ("big1", "big2"):
            await s.engine.execute("PlaceOrder", {"order_id": order, "total": 250_000})
            await s.state(order, "awaiting_payment")
            await s.engine.execute("CapturePayment", {"order_id": order, "amount": 250_000})
            await s.state(order, "review")
        approved = await s.runner.decide(
            "Fulfilment", "big1", approve=True, token="finance", comment="checked"
        )
        assert approved.state == "shipping"
        decided = next(h for h in approved.history if h["decision"] == "Decided")
        assert (decided["outcome"], decided["token"], decided["comment"]) == (
            "approve",
            "finance",
            "checked",
        )
        rejected = await s.runner.decide(
            "Fulfilment", "big2", approve=False, token="ops", comment=None
        )
        assert rejected.state == "refunding"
        refunding = await s.state("big2", "refunding")
        assert [e.type for e in await store.read("Payment-big2")] == [
            "PaymentCaptured",
            "PaymentRefunded",
        ]
        assert refunding.undelivered == []
        with pytest.raises(NotAwaitingDecision):
            await s.runner.decide("Fulfilment", "big2", approve=True, token="ops", comment=None)
        with pytest.raises(ProcessNotFound):
            await s.runner.instance("Fulfilment", "nobody")


async def test_events_for_none_or_a_finished_instance_are_ignored(
    backend: str, tmp_path: Path, config: Config
) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, config) as s:
        await s.engine.execute("CapturePayment", {"order_id": "stray", "amount": 1})
        await s.engine.execute("PlaceOrder", {"order_id": "o3", "total": 1})
        await s.engine.execute("CancelOrder", {"order_id": "o3", "reason": "changed mind"})
        await s.state("o3", "cancelled")
        await s.engine.execute("CapturePayment", {"order_id": "o3", "amount": 1})
        deadline = asyncio.get_running_loop().time() + 10
        while (
            s.metric(
                "catgad_process_events_ignored_total", process="Fulfilment", event="PaymentCaptured"
            )
            < 2
        ):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        assert (await s.runner.instance("Fulfilment", "o3")).state == "cancelled"
        with pytest.raises(ProcessNotFound):
            await s.runner.instance("Fulfilment", "stray")


async def test_a_restart_decides_each_event_once(
    backend: str, tmp_path: Path, config: Config
) -> None:
    """Events appended while no runner drove (or before a restart) are decided on once the
    log is read, each once; those decided already are not decided again."""
    async with BACKENDS[backend](tmp_path) as store:
        async with shop(store, config) as first:
            await first.engine.execute("PlaceOrder", {"order_id": "o4", "total": 2500})
            await first.state("o4", "awaiting_payment")
        # nobody drives: the payment waits in the log
        engine = CommandEngine(config, store)
        await engine.execute("CapturePayment", {"order_id": "o4", "amount": 2500})
        async with shop(store, config, owner="d2") as second:
            done = await second.state("o4", "done")
            moved = [h for h in done.history if h["decision"] == "Transitioned"]
            assert [m["to"] for m in moved] == ["shipping", "done"]
        async with shop(store, config, owner="d3") as third:
            await asyncio.sleep(0.2)
            again = await third.runner.instance("Fulfilment", "o4")
            assert again.version == done.version, "nothing decided twice"


async def test_an_approval_racing_its_timer_one_wins(
    backend: str, tmp_path: Path, config: Config
) -> None:
    """The approval (taken by another daemon, as an HTTP call would be) and the timer decided
    at the same moment, many times: each instance leaves review once; the loser is a 409 (the
    approval) or a timer found stale. Only the store's version check keeps them apart."""
    async with (
        BACKENDS[backend](tmp_path) as store,
        shop(store, config) as s,
        shop(store, config, owner="d2", drive=False) as other,
    ):
        orders = [f"r{i}" for i in range(12)]
        for order in orders:
            await s.engine.execute("PlaceOrder", {"order_id": order, "total": 250_000})
            await s.state(order, "awaiting_payment")
            await s.engine.execute("CapturePayment", {"order_id": order, "amount": 250_000})
            await s.state(order, "review")

        async def approve(order: str) -> str:
            try:
                await other.runner.decide(
                    "Fulfilment", order, approve=True, token="t", comment=None
                )
            except NotAwaitingDecision:
                return "409"
            return "approved"

        # the approvals set off, and the review timers fall due while they are on their way
        racing = [asyncio.ensure_future(approve(order)) for order in orders]
        await asyncio.sleep(0)
        s.clock.advance(2 * DAY)
        answers = await asyncio.gather(*racing)
        for order, answer in zip(orders, answers, strict=True):
            final = await s.state(order, "done" if answer == "approved" else "refunding")
            left = [
                h
                for h in final.history
                if h["decision"] == "Transitioned" and h.get("from") == "review"
            ]
            assert len(left) == 1, (order, answer, final.history)
            fired = any(
                h["decision"] == "TimerFired" and h.get("state") == "review" for h in final.history
            )
            assert fired == (answer == "409"), (order, answer)
