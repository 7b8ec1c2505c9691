"""Process scenario tests (`processes.<name>.tests`), run by `catgad test`: no server, no waiting.

    tests:
      - name: a big order waits for a person, who approves it
        given:
          - {type: OrderPlaced, data: {order_id: o1, total: 250000}}
          - {type: PaymentCaptured, data: {order_id: o1, amount: 250000}}
          - {approve: looks fine}
        then: {state: shipping, sent: [BookShipment]}

`given` is what happens, in order: an event ({type, data}: it starts the
instance or moves it, through the process's own decisions), a person's
decision ({approve: comment} or {reject: comment}), or time passing ({wait:
24h}: a timer that falls due fires, at its due time). The first instance a
start event opens is the one checked: its `state`, `status`, `data` (the
fields given) and the commands it `sent`, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catgad.envelope import Envelope
from catgad.processes.model import ProcessDef
from catgad.processes.state import (
    NotWaiting,
    ProcessRuleError,
    ProcessState,
    begin,
    due,
    evolve,
    instance_of,
    on_approval,
    on_event,
    on_time,
)
from catgad.reactors.decisions import Decide
from catgad.reactors.durations import parse_duration
from catgad.testing.scenarios import SOURCE, Outcome

START = 1_700_000_000.0


@dataclass(slots=True)
class ProcessScenario:
    name: str
    process: str
    given: list[dict[str, Any]]
    expect_state: str | None = None
    expect_status: str | None = None
    expect_data: dict[str, Any] | None = None
    expect_sent: list[str] | None = None
    where: Any = None


def build_scenarios(process: ProcessDef) -> list[ProcessScenario]:
    out = []
    for item, where in process.tests:
        then = item.get("then") or {}
        out.append(
            ProcessScenario(
                name=item["name"],
                process=process.name,
                given=list(item.get("given") or []),
                expect_state=then.get("state"),
                expect_status=then.get("status"),
                expect_data=then.get("data"),
                expect_sent=list(then["sent"]) if "sent" in then else None,
                where=where,
            )
        )
    return out


@dataclass(slots=True)
class _Run:
    process: ProcessDef
    now: float = START
    state: ProcessState | None = None
    problems: list[str] = field(default_factory=list)

    def apply(self, made: list[Decide]) -> None:
        assert self.state is not None
        for decision in made:
            version = self.state.version + 1
            evolve(
                self.state,
                Envelope(
                    type=decision.type,
                    data={**decision.data, "at": self.now},
                    source=SOURCE,
                    id=f"decision-{version}",
                    streamversion=version,
                ),
            )

    def event(self, step: dict[str, Any], number: int) -> None:
        event = Envelope(
            type=step["type"],
            data=dict(step.get("data") or {}),
            source=SOURCE,
            id=f"event-{number}",
        )
        instance = instance_of(self.process, event)
        if self.state is None:
            if event.type in self.process.start and instance is not None:
                self.state = ProcessState(
                    self.process.name, instance, self.process.stream(instance)
                )
                self.apply(begin(self.process, instance, event, self.now))
            return
        if instance == self.state.id:
            self.apply(on_event(self.process, self.state, event, self.now))

    def wait(self, seconds: float) -> None:
        end = self.now + seconds
        while self.state is not None:
            when = due(self.state)
            if when is None or when > end:
                break
            self.now = max(self.now, when)
            self.apply(on_time(self.process, self.state, self.now))
        self.now = end

    def decide(self, approve: bool, comment: str) -> None:
        if self.state is None:
            self.problems.append("an approval came before any instance started")
            return
        try:
            self.apply(
                on_approval(self.process, self.state, approve, "catgad-test", comment, self.now)
            )
        except NotWaiting as exc:
            self.problems.append(f"the approval was refused (409): {exc}")


def run_process_scenario(process: ProcessDef, scenario: ProcessScenario) -> Outcome:
    run = _Run(process)
    try:
        for number, step in enumerate(scenario.given, 1):
            if "type" in step:
                run.event(step, number)
            elif "wait" in step:
                run.wait(parse_duration(step["wait"]))
            elif "approve" in step or "reject" in step:
                run.decide("approve" in step, str(step.get("approve", step.get("reject"))))
    except ProcessRuleError as exc:
        run.problems.append(f"{exc.where}: {exc.why}")
    problems = run.problems + _check(scenario, run.state)
    return Outcome(scenario, not problems, problems)


def _check(scenario: ProcessScenario, state: ProcessState | None) -> list[str]:
    if state is None:
        return ["no instance started (no start event of the process, or no id from it)"]
    problems = []
    if scenario.expect_state is not None and state.state != scenario.expect_state:
        problems.append(f"state: expected {scenario.expect_state}, got {state.state}")
    if scenario.expect_status is not None and state.status != scenario.expect_status:
        problems.append(f"status: expected {scenario.expect_status}, got {state.status}")
    for name, value in (scenario.expect_data or {}).items():
        if state.data.get(name) != value:
            problems.append(f"data.{name}: expected {value!r}, got {state.data.get(name)!r}")
    sent = [c["command"] for c in state.sent]
    if scenario.expect_sent is not None and sent != scenario.expect_sent:
        problems.append(f"sent: expected {scenario.expect_sent}, got {sent}")
    return problems
