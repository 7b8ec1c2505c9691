"""A property of the saga decisions: whatever each step's outcome, the saga ends completed, or
compensated with exactly the completed steps' compensations, newest first.

The decisions are driven as the runner drives them (next_action, then answered
or refused for a command's outcome), without a store: a generated saga of 1 to
6 steps, some awaiting an event, and a generated outcome for each step.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.reactors.decisions import Decide
from catgad.sagas.model import SagaDef
from catgad.sagas.section import SAGAS
from catgad.sagas.state import (
    STARTED,
    SagaState,
    Send,
    Wait,
    answered,
    evolve,
    next_action,
    refused,
)

# a step's command: accepted, rejected (4xx), or 503 until its retries are spent (the runner's
# retries inside one attempt are not decisions: a 503 then a 2xx is "ok" here)
OUTCOMES = ("ok", "rejected", "unavailable")
AWAITED = ("success", "failure", "timeout")


def saga_yaml(awaits: list[bool]) -> str:
    steps, compensate, commands, events = [], [], [], []
    for i, waits in enumerate(awaits):
        step = f"      - {{name: s{i}, command: Do{i}, data: {{n: input.n}}"
        if waits:
            step += f", await: {{success: Ok{i}, failure: [No{i}], timeout: 30s}}"
        steps.append(step + "}")
        compensate.append(f"      Done{i}: {{command: Undo{i}, data: {{n: event.data.n}}}}")
        if waits:
            compensate.append(f"      Ok{i}: {{command: Undo{i}, data: {{n: event.data.n}}}}")
        for name, event in ((f"Do{i}", f"Done{i}"), (f"Undo{i}", f"Undone{i}")):
            commands.append(
                f"  {name}: {{aggregate: A, schema: *n, "
                f"emit: [{{event: {event}, data: {{n: data.n}}}}]}}"
            )
        events += [
            f"  {e}{i}: {{schema: {{type: object}}}}" for e in ("Done", "Undone", "Ok", "No")
        ]
    return "\n".join(
        [
            "catgad: 1",
            "x-n: &n {type: object, required: [n], properties: {n: {type: string}}}",
            "aggregates: {A: {id: n}}",
            "sagas:",
            "  S:",
            "    steps:",
            *steps,
            "    compensate:",
            *compensate,
            "commands:",
            *commands,
            "events:",
            *events,
        ]
    )


class Simulation:
    """One instance, its decisions applied as the runner applies them."""

    def __init__(self, saga: SagaDef) -> None:
        self.saga = saga
        self.state = SagaState("S", "i1", saga.stream("i1"))
        self.now = 1000.0
        self.sent: list[str] = []  # commands, in the order they went out
        self.apply(Decide(STARTED, {"input": {"n": "x"}}))

    def apply(self, decision: Decide) -> None:
        version = self.state.version + 1
        evolve(self.saga, self.state, Envelope(
            type=decision.type, data={**decision.data, "at": self.now}, id=f"d{version}",
            source="t", subject=self.state.stream, streamversion=version,
        ))  # fmt: skip

    def event(self, type_: str, n: int) -> dict[str, Any]:
        return {"id": f"{type_}-{n}", "type": type_, "data": {"n": "x"}, "subject": "A-x"}

    def run(self, plan: list[tuple[str, str]]) -> None:
        arrived: Envelope | None = None
        for _ in range(200):
            action = next_action(self.saga, self.state, self.now, arrived)
            if action is None:
                return
            if isinstance(action, Decide):
                self.apply(action)
                arrived = None
            elif isinstance(action, Wait):
                index = self.state.step
                answer = plan[index][1]
                if answer == "timeout":
                    assert action.until is not None
                    self.now = action.until
                else:
                    kind = f"Ok{index}" if answer == "success" else f"No{index}"
                    correlation = self.state.correlation
                    arrived = Envelope(
                        type=kind, data={"n": "x"}, id=f"{kind}-ev", source="t",
                        correlationid=correlation,
                    )  # fmt: skip
            else:
                self.send(action, plan)
        raise AssertionError("the saga never settled")

    def send(self, action: Send, plan: list[tuple[str, str]]) -> None:
        if action.announce is not None:
            self.apply(action.announce)
        self.sent.append(action.command)
        if action.compensation:
            self.apply(answered(self.saga, self.state, action, [self.event("Undone", 0)]))
            return
        index = self.state.step
        outcome = plan[index][0]
        if outcome == "ok":
            self.apply(answered(self.saga, self.state, action, [self.event(f"Done{index}", index)]))
        else:
            status = 422 if outcome == "rejected" else 503
            self.apply(refused(self.saga, self.state, action, outcome, status))


@st.composite
def sagas(draw: st.DrawFn) -> tuple[list[bool], list[tuple[str, str]]]:
    size = draw(st.integers(1, 6))
    awaits = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    plan = [(draw(st.sampled_from(OUTCOMES)), draw(st.sampled_from(AWAITED))) for _ in awaits]
    return awaits, plan


_CONFIGS: dict[tuple[bool, ...], SagaDef] = {}
_FOLDER = Path(tempfile.mkdtemp(prefix="catgad-saga-property-"))


def saga_for(awaits: list[bool]) -> SagaDef:
    key = tuple(awaits)
    if key not in _CONFIGS:
        path = _FOLDER / f"saga-{len(_CONFIGS)}.yaml"
        path.write_text(textwrap.dedent(saga_yaml(awaits)), encoding="utf-8")
        _CONFIGS[key] = SAGAS.of(load_config(path, env={}))["S"]
    return _CONFIGS[key]


@settings(max_examples=300, deadline=None)
@given(sagas())
def test_a_saga_completes_or_undoes_exactly_what_it_did_in_reverse(
    case: tuple[list[bool], list[tuple[str, str]]],
) -> None:
    awaits, plan = case
    sim = Simulation(saga_for(awaits))
    sim.run(plan)
    state = sim.state
    completed: list[int] = []
    for index, (outcome, answer) in enumerate(plan):
        if outcome != "ok":
            break
        if awaits[index] and answer != "success":
            break
        completed.append(index)
    steps_sent = [c for c in sim.sent if c.startswith("Do")]
    undone = [c for c in sim.sent if c.startswith("Undo")]
    if len(completed) == len(plan):
        assert state.status == "completed"
        assert undone == []
    else:
        assert state.status == "compensated"
        expected: list[str] = []
        for index in reversed(completed):  # newest first: an awaited event, then the command's
            expected += [f"Undo{index}", f"Undo{index}"] if awaits[index] else [f"Undo{index}"]
        assert undone == expected
    assert steps_sent == [f"Do{i}" for i in range(len(completed) + (len(completed) < len(plan)))]
