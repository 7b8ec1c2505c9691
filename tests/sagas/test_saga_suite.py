"""The saga suite, unchanged on every store: memory, SQLite, PostgreSQL, Redis and NATS.

Time is a ManualClock moved by the tests: timeouts are passed, not waited for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catgad.envelope import Envelope
from catgad.errors import SagaConflict, SagaNotFound
from catgad.sagas.state import Send, command_id, next_action
from tests.bus.outbox import until
from tests.helpers.stores import BACKEND_PARAMS, BACKENDS
from tests.sagas.conftest import Shop, shop, shop_config

pytestmark = pytest.mark.parametrize("backend", BACKEND_PARAMS)


def decisions(state: Any) -> list[tuple[str, str | None]]:
    return [(e["decision"], e.get("command") or e.get("name")) for e in state.log]


async def aggregate(s: Shop, kind: str, order_id: str) -> dict[str, Any]:
    _, loaded = await s.engine.aggregate_state(kind, order_id)
    return loaded.state


async def test_a_saga_runs_its_steps_in_order_and_completes(backend: str, tmp_path: Path) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        await s.place("o1")
        state = await s.settled("o1")
        assert state.status == "completed"
        sent = [(e["command"], e["command_id"]) for e in state.log if e["decision"] == "StepSent"]
        assert sent == [
            (cmd, command_id("Saga-Place-o1", "step", i))
            for i, cmd in enumerate(
                ["ReserveStock", "ChargePayment", "BookShipment", "ConfirmOrder"]
            )
        ]
        assert (await aggregate(s, "Order", "o1"))["status"] == "confirmed"
        # every command the saga sent carries the saga as its correlation
        for stream in ("Reservation-o1", "Payment-o1", "Shipment-o1"):
            for event in await store.read(stream):
                assert event.correlationid == "Saga-Place-o1"
        assert s.metric("catgad_saga_instances_total", saga="Place", outcome="completed") == 1


async def test_a_failing_step_compensates_in_reverse_order(backend: str, tmp_path: Path) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        await s.place("o1", address="nowhere")
        state = await s.settled("o1")
        assert state.status == "compensated"
        assert state.reason == "BookShipment answered 422: we do not ship there"
        undone = [e["command"] for e in state.log if e["decision"] == "CompensationSent"]
        assert undone == ["RefundPayment", "ReleaseStock"]
        assert (await aggregate(s, "Payment", "o1"))["status"] == "refunded"
        assert (await aggregate(s, "Reservation", "o1"))["status"] == "released"
        assert s.metric("catgad_saga_instances_total", saga="Place", outcome="compensated") == 1


async def test_a_failure_event_fails_the_awaited_step(backend: str, tmp_path: Path) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        await s.place("o1", amount=9000)  # declined
        state = await s.settled("o1")
        assert state.status == "compensated" and state.reason == "PaymentDeclined arrived"
        assert [e["command"] for e in state.log if e["decision"] == "CompensationSent"] == [
            "ReleaseStock"
        ]


async def test_an_awaited_event_from_outside_completes_the_step(
    backend: str, tmp_path: Path
) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        await s.place("o1", amount=3000)  # requested: captured later
        await s.waiting("o1", "pay")
        # the payment provider's call carries the saga's correlation, as CloudEvents do
        capture = Envelope(
            type="CapturePayment",
            data={"order_id": "o1", "amount": 3000},
            source="psp",
            correlationid="Saga-Place-o1",
        )
        await s.engine.handle(capture)
        state = await s.settled("o1")
        assert state.status == "completed"


async def test_an_await_times_out_and_compensates(backend: str, tmp_path: Path) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        await s.place("o1", amount=3000)
        await s.waiting("o1", "pay")
        s.clock.advance(29)
        state = await s.runner.instance("Place", "o1")
        assert state.status == "running", "not before it is due"
        s.clock.advance(2)
        state = await s.settled("o1")
        assert state.status == "compensated"
        assert state.reason == "no PaymentCaptured or PaymentDeclined within 30s"


async def test_the_sagas_own_timeout_compensates(backend: str, tmp_path: Path) -> None:
    config = shop_config(tmp_path, {"timeout: 30s": "timeout: 1h"})
    async with BACKENDS[backend](tmp_path) as store, shop(store, config) as s:
        await s.place("o1", amount=3000)
        await s.waiting("o1", "pay")
        s.clock.advance(601)
        state = await s.settled("o1")
        assert state.status == "compensated"
        assert state.reason == "the saga's timeout (600s) passed"


async def test_a_compensation_that_fails_leaves_it_failed_until_retried(
    backend: str, tmp_path: Path
) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        await s.place("o1", amount=3000)
        await s.waiting("o1", "pay")
        await s.engine.execute("HoldStock", {"order_id": "o1"})  # ReleaseStock is refused now
        s.clock.advance(31)  # the payment never comes: compensate
        state = await s.settled("o1")
        assert state.status == "failed"
        assert state.reason == "ReleaseStock answered 422: nothing to release"
        assert s.metric("catgad_saga_instances_total", saga="Place", outcome="failed") == 1
        await until(lambda: [i["id"] for i in s.runner.listing("Place", "failed")] == ["o1"])
        await s.engine.execute("UnholdStock", {"order_id": "o1"})  # the target recovers
        await s.runner.retry("Place", "o1")
        state = await s.settled("o1")
        assert state.status == "compensated"
        assert (await aggregate(s, "Reservation", "o1"))["status"] == "released"
        sent = [e["command_id"] for e in state.log if e["decision"] == "CompensationSent"]
        assert len(sent) == 1, "the retry sends the same compensation, not a second one"


async def test_starting_twice_gives_the_same_instance(backend: str, tmp_path: Path) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        data = {"order_id": "o9", "qty": 1, "amount": 500, "address": "x"}
        first, created = await s.runner.begin("Place", data)
        again, created_again = await s.runner.begin("Place", data)
        assert (created, created_again) == (True, False)
        assert first.id == again.id == "o9"
        done = await s.settled("o9")  # no order was placed: confirming it fails at the end
        assert (done.status, done.reason) == (
            "compensated",
            "ConfirmOrder answered 422: only a placed order can be confirmed",
        )
        sent = [
            e for e in (await s.runner.instance("Place", "o9")).log if e["decision"] == "StepSent"
        ]
        assert len(sent) == 4, "nothing runs twice"


async def test_cancel_and_retry_answer_409_when_they_do_not_apply(
    backend: str, tmp_path: Path
) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        await s.place("o1")
        await s.settled("o1")
        with pytest.raises(SagaConflict):
            await s.runner.cancel("Place", "o1")
        with pytest.raises(SagaConflict):
            await s.runner.retry("Place", "o1")
        with pytest.raises(SagaNotFound):
            await s.runner.instance("Place", "nope")


async def test_cancel_compensates_a_running_saga(backend: str, tmp_path: Path) -> None:
    async with BACKENDS[backend](tmp_path) as store, shop(store, shop_config(tmp_path)) as s:
        await s.place("o1", amount=3000)
        await s.waiting("o1", "pay")
        await s.runner.cancel("Place", "o1", reason="customer changed their mind")
        state = await s.settled("o1")
        assert state.status == "compensated"
        assert state.reason == "customer changed their mind"
        assert [e["command"] for e in state.log if e["decision"] == "CompensationSent"] == [
            "ReleaseStock"
        ]


async def test_a_restarted_runner_resumes_with_the_same_command_ids(
    backend: str, tmp_path: Path
) -> None:
    """An instance left between its announcement and its outcome (as kill -9 leaves it)
    is driven on by the next runner, which sends the announced command with its id."""
    config = shop_config(tmp_path)
    async with BACKENDS[backend](tmp_path) as store:
        async with shop(store, config, drive=False) as idle:
            await idle.place("o1", amount=3000)
            order = {"order_id": "o1", "qty": 1, "amount": 3000, "address": "x"}
            state, _ = await idle.runner.begin("Place", order)
            # started with its first step announced, and nobody driving: as a crash leaves it
            assert state.sent is not None and state.accepted is None
            announced = state.sent["command_id"]
            assert announced == command_id("Saga-Place-o1", "step", 0)
            assert await store.read("Reservation-o1") == []
            action = next_action(idle.runner.definition("Place"), state, idle.clock.now())
            assert isinstance(action, Send) and action.announce is None  # sent again, as is
        async with shop(store, config) as s:
            await s.waiting("o1", "pay")
            state = await s.runner.instance("Place", "o1")
            sent = [e for e in state.log if e["decision"] == "StepSent"]
            assert [e["command_id"] for e in sent] == [
                announced,
                command_id("Saga-Place-o1", "step", 1),
            ]
            reserved = await store.read("Reservation-o1")
            assert len(reserved) == 1, "the re-sent step took effect once"
            assert reserved[0].id and reserved[0].causationid == announced
