"""The pure decisions of a process (catgad.processes.state) on the fulfilment example: starts,
transitions, timers (never early, once, cancelled on leaving), approvals (409 when none is
waited for), commands with ids fixed by the instance and the entry, and a timer racing an
event: whichever is decided on the stream's version first wins, the other is decided again."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.processes.model import ProcessDef
from catgad.processes.section import PROCESSES
from catgad.processes.state import (
    APPROVAL_REQUESTED,
    COMMANDS_SENT,
    FINISHED,
    TIMER_CANCELLED,
    TIMER_SCHEDULED,
    NotWaiting,
    ProcessState,
    begin,
    command_id,
    due,
    evolve,
    on_approval,
    on_event,
    on_time,
)
from catgad.reactors.decisions import Decide
from tests.helpers.daemon import REPO

FULFILMENT = REPO / "config" / "examples" / "fulfilment.yaml"
T0 = 1_000_000.0
DAY = 86_400.0


@pytest.fixture(scope="module")
def process() -> ProcessDef:
    return PROCESSES.of(load_config(FULFILMENT, env={}))["Fulfilment"]


def event(type_: str, **data: Any) -> Envelope:
    return Envelope(type=type_, data=data, source="tests")


def applied(state: ProcessState, made: list[Decide], now: float) -> ProcessState:
    for decision in made:
        version = state.version + 1
        evolve(
            state,
            Envelope(
                type=decision.type,
                data={**decision.data, "at": now},
                source="tests",
                id=f"d{version}",
                streamversion=version,
            ),
        )
    return state


def started(process: ProcessDef, order_id: str = "o1", total: int = 2500) -> ProcessState:
    state = ProcessState(process.name, order_id, process.stream(order_id))
    return applied(
        state,
        begin(process, order_id, event("OrderPlaced", order_id=order_id, total=total), T0),
        T0,
    )


def test_a_start_schedules_the_payment_deadline(process: ProcessDef) -> None:
    state = started(process)
    assert (state.status, state.state, state.data) == (
        "running",
        "awaiting_payment",
        {"total": 2500},
    )
    assert due(state) == T0 + DAY
    assert [h["decision"] for h in state.history] == ["Started", "TimerScheduled"]


def test_a_timer_never_fires_early_and_fires_once(process: ProcessDef) -> None:
    state = started(process)
    assert on_time(process, state, T0 + DAY - 0.001) == []
    made = on_time(process, state, T0 + DAY + 5)
    assert [d.type for d in made][-2:] == [COMMANDS_SENT, FINISHED]
    applied(state, made, T0 + DAY + 5)
    assert (state.state, state.status) == ("expired", "finished")
    assert on_time(process, state, T0 + 10 * DAY) == [], "fired once"
    assert state.sent[0]["command"] == "CancelOrder"
    assert state.sent[0]["data"] == {"order_id": "o1", "reason": "not paid in time"}


def test_leaving_a_state_cancels_its_timer(process: ProcessDef) -> None:
    state = started(process)
    paid = event("PaymentCaptured", order_id="o1", amount=2500)
    made = on_event(process, state, paid, T0 + 60)
    assert made[0].type == TIMER_CANCELLED
    applied(state, made, T0 + 60)
    assert state.state == "shipping" and due(state) is None
    assert state.sent == [
        {
            "command": "BookShipment",
            "command_id": command_id(state.stream, "enter", 2, 0),
            "data": {"order_id": "o1", "address": "on file"},
            "cause": paid.id,  # the command's causationid: the event that moved the instance
        }
    ]


def test_an_event_no_transition_takes_is_ignored(process: ProcessDef) -> None:
    state = started(process)
    assert on_event(process, state, event("ShipmentBooked", order_id="o1"), T0) == []
    done = started(process)
    applied(done, on_time(process, done, T0 + 2 * DAY), T0 + 2 * DAY)
    assert on_event(process, done, event("PaymentCaptured", order_id="o1", amount=1), T0) == []


def test_an_approval_moves_the_instance_and_is_recorded(process: ProcessDef) -> None:
    state = started(process, total=250_000)
    paid = event("PaymentCaptured", order_id="o1", amount=250_000)
    applied(state, on_event(process, state, paid, T0 + 1), T0 + 1)
    assert state.state == "review" and state.approval is not None
    assert state.history[-1]["decision"] == "ApprovalRequested"
    assert [h["decision"] for h in state.history].count(TIMER_SCHEDULED.split(".")[1]) == 2
    made = on_approval(process, state, False, "finance", "stolen card", T0 + 2)
    applied(state, made, T0 + 2)
    assert (state.state, state.status) == ("refunding", "finished")
    decided = next(h for h in state.history if h["decision"] == "Decided")
    assert decided == {
        "decision": "Decided",
        "at": T0 + 2,
        "outcome": "reject",
        "token": "finance",
        "comment": "stolen card",
    }
    with pytest.raises(NotWaiting):
        on_approval(process, state, True, "finance", None, T0 + 3)


def test_an_approval_for_an_instance_waiting_for_none_is_refused(process: ProcessDef) -> None:
    state = started(process)
    with pytest.raises(NotWaiting):
        on_approval(process, state, True, "ops", None, T0)
    assert APPROVAL_REQUESTED not in [
        d.type for d in begin(process, "o9", event("OrderPlaced", order_id="o9", total=1), T0)
    ]


@settings(max_examples=200, deadline=None)
@given(
    delay=st.floats(min_value=0, max_value=3 * DAY, allow_nan=False),
    event_first=st.booleans(),
)
def test_a_timer_and_an_event_together_one_wins(
    process: ProcessDef, delay: float, event_first: bool
) -> None:
    """Both are decided on the same version; the stream takes the first append and refuses the
    other (its expected version is stale); decided again on the new state, the loser does
    nothing. Exactly one moves the instance, and the timer never fires early."""
    state = started(process)
    now = T0 + delay
    by_event = on_event(process, state, event("PaymentCaptured", order_id="o1", amount=2500), now)
    by_timer = on_time(process, state, now)
    assert by_event, "the payment is always a transition of awaiting_payment"
    assert bool(by_timer) == (now >= T0 + DAY)
    first = by_event if event_first or not by_timer else by_timer
    applied(state, first, now)
    again_event = on_event(
        process, state, event("PaymentCaptured", order_id="o1", amount=2500), now
    )
    again_timer = on_time(process, state, now)
    assert again_event == [] and again_timer == [], "the loser is stale and does nothing"
    assert state.state in ("shipping", "expired")
