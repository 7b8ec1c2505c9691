"""Saga scenario tests (`sagas.<name>.tests`), run by `catgad test` with no server and no waiting.

    tests:
      - name: a refused shipment refunds and releases
        start: {order_id: o1, sku: book, qty: 1, amount: 2500, address: nowhere}
        steps:                      # a step's outcome; by default its command runs for real
          pay: {reply: {events: [{type: PaymentCaptured, data: {order_id: o1, amount: 2500}}]}}
        then:
          status: compensated
          sent: [ReserveStock, ChargePayment, BookShipment, RefundPayment, ReleaseStock]

A step's outcome is `accepted` (the default: the command runs on the scenario's
in-memory engine, rules and plugins for real), `rejected` (or `{rejected:
reason}`: a 409), `failing` (503 on every attempt: the retries are spent), or
`{reply: {...}}` (a handler's reply, so no webhook is called). `events` arrive
`after` a time from the start (carrying the saga's correlation), `elapsed` is
the time that passes at the end: timeouts fire without anyone waiting. The
decisions are the daemon's own (catgad.sagas.state); only the time is moved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from catgad.engine.commands import CommandEngine
from catgad.envelope import Envelope
from catgad.errors import CatgadError
from catgad.handlers.plugin import PluginHandler
from catgad.handlers.protocol import Handler
from catgad.handlers.registry import StubHandler
from catgad.model import Config
from catgad.reactors.decisions import Decide
from catgad.reactors.durations import parse_duration
from catgad.sagas.model import SagaDef
from catgad.sagas.section import SAGAS
from catgad.sagas.state import (
    STARTED,
    SagaRuleError,
    SagaState,
    Send,
    Wait,
    answered,
    awaited,
    evolve,
    next_action,
    refused,
)
from catgad.store.memory import MemoryStore
from catgad.testing.model import GivenEvent
from catgad.testing.scenarios import SOURCE, Outcome, event_stream

START = 1_700_000_000.0  # the scenario's clock at the start


@dataclass(frozen=True, slots=True)
class Arrival:
    type: str
    data: dict[str, Any]
    after: float = 0.0


@dataclass(slots=True)
class SagaScenario:
    name: str
    saga: str
    start: dict[str, Any]
    given: list[GivenEvent] = field(default_factory=list)  # stored before the start
    steps: dict[str, Any] = field(default_factory=dict)  # step name -> outcome
    events: list[Arrival] = field(default_factory=list)
    elapsed: float = 0.0
    expect_status: str | None = None
    expect_sent: list[str] | None = None
    expect_reason: str | None = None
    where: Any = None


async def run_saga_scenario(
    config: Config, scenario: SagaScenario, plugins: Mapping[str, Callable[..., Any]]
) -> Outcome:
    saga = SAGAS.of(config)[scenario.saga]
    store = MemoryStore()
    await store.open()
    try:
        handlers: dict[str, Handler] = {}
        engine = CommandEngine(config, store, handlers=handlers)
        run = _Run(config, saga, scenario, engine, handlers, plugins)
        try:
            problems = await run.play()
        except _NeedsWebhook as skip:
            return Outcome(scenario, True, [], str(skip))
        return Outcome(scenario, not problems, problems)
    finally:
        await store.close()


class _NeedsWebhook(Exception):
    """The scenario reached a webhook command it gives no reply for: it is skipped."""


class _Run:
    def __init__(
        self,
        config: Config,
        saga: SagaDef,
        scenario: SagaScenario,
        engine: CommandEngine,
        handlers: dict[str, Handler],
        plugins: Mapping[str, Callable[..., Any]],
    ) -> None:
        self.config = config
        self.saga = saga
        self.scenario = scenario
        self.engine = engine
        self.handlers = handlers
        self.plugins = plugins
        self.state = SagaState(saga.name, "scenario", saga.stream("scenario"))
        self.now = START
        self.sent: list[str] = []
        self.pending = sorted(scenario.events, key=lambda a: a.after)

    async def play(self) -> list[str]:
        s = self.scenario
        self.instance_id = self._instance_id()
        self.state = SagaState(self.saga.name, self.instance_id, self.saga.stream(self.instance_id))
        for given in s.given:
            await self._store(Envelope(type=given.type, data=dict(given.data), source=SOURCE))
        self._apply(Decide(STARTED, {"input": s.start}))
        end = START + max([s.elapsed, *(a.after for a in s.events)], default=0.0)
        arrived: Envelope | None = None
        for _ in range(1000):
            try:
                action = next_action(self.saga, self.state, self.now, arrived)
            except SagaRuleError as exc:
                return [f"{exc.where}: {exc.why}"]
            if action is None:
                break
            if isinstance(action, Decide):
                self._apply(action)
                arrived = None
            elif isinstance(action, Send):
                await self._send(action)
            else:
                arrived = await self._next(action, end)
                if arrived is None and self.now >= end and not self._due(action, end):
                    break
        return self._check()

    def _instance_id(self) -> str:
        if self.saga.start_id is None:
            return "scenario"
        return str(self.saga.start_id.evaluate({"data": self.scenario.start}))

    def _due(self, wait: Wait, end: float) -> bool:
        return wait.until is not None and wait.until <= end

    async def _next(self, wait: Wait, end: float) -> Envelope | None:
        """Move time to the next arrival or deadline (not past the end); the event that came."""
        arrival = self.pending[0] if self.pending else None
        at = START + arrival.after if arrival is not None else None
        if arrival is not None and at is not None and (wait.until is None or at < wait.until):
            self.pending.pop(0)
            self.now = max(self.now, at)
            return await self._arrive(arrival)
        if wait.until is not None and wait.until <= end:
            self.now = max(self.now, wait.until)
            return None
        self.now = end
        return None

    async def _arrive(self, arrival: Arrival) -> Envelope | None:
        """Store the event in its aggregate's stream; it answers the saga if it matches."""
        event = await self._store(
            Envelope(
                type=arrival.type,
                data=dict(arrival.data),
                source=SOURCE,
                correlationid=self.state.correlation,
            )
        )
        return event if awaited(self.saga, self.state, event) is not None else None

    async def _store(self, event: Envelope) -> Envelope:
        stream = event_stream(self.config, GivenEvent(event.type, event.data))
        stored = await self.engine.store.append(
            stream, [event], expected_version=None, command_id=f"scenario-{event.id}"
        )
        return stored.events[0] if stored.events else event

    async def _send(self, action: Send) -> None:
        if action.announce is not None:
            self._apply(action.announce)
        self.sent.append(action.command)
        step = None if action.compensation else self.saga.steps[self.state.step]
        outcome = self.scenario.steps.get(step.name, "accepted") if step else "accepted"
        if outcome == "failing":
            attempts = max(self.saga.retry.attempts, 1)
            why = f"{action.command} answered 503: failing (after {attempts} attempts)"
            self._apply(refused(self.saga, self.state, action, why, 503))
            return
        if outcome == "rejected" or (isinstance(outcome, dict) and "rejected" in outcome):
            reason = outcome["rejected"] if isinstance(outcome, dict) else "rejected"
            why = f"{action.command} answered 409: {reason}"
            self._apply(refused(self.saga, self.state, action, why, 409))
            return
        self._handler_for(action.command, outcome)
        envelope = Envelope(
            type=action.command,
            data=dict(action.data),
            id=action.command_id,
            source=SOURCE,
            correlationid=self.state.correlation,
        )
        try:
            result = await self.engine.handle(envelope)
        except CatgadError as exc:
            why = f"{action.command} answered {exc.status}: {exc.detail}"
            self._apply(refused(self.saga, self.state, action, why, exc.status))
            return
        events = [
            {"id": e.id, "type": e.type, "data": e.data, "subject": e.subject}
            for e in result.events
        ]
        decision = answered(self.saga, self.state, action, events)
        self._apply(decision)
        for event in result.events:  # the command itself may carry the awaited outcome
            if awaited(self.saga, self.state, event) is not None:
                then = next_action(self.saga, self.state, self.now, event)
                if isinstance(then, Decide):
                    self._apply(then)
                break

    def _handler_for(self, command: str, outcome: Any) -> None:
        name = self.config.commands[command].handler
        if name is None:
            return
        if isinstance(outcome, dict) and "reply" in outcome:
            self.handlers[name] = StubHandler(name, outcome["reply"], self.config.events)
        elif self.config.handlers[name].kind == "webhook":
            raise _NeedsWebhook(f"needs webhook {name!r} for {command} (or give its reply)")
        else:
            self.handlers[name] = PluginHandler.from_config(
                self.config.handlers[name], self.plugins[name], self.config.events
            )

    def _apply(self, decision: Decide) -> None:
        version = self.state.version + 1
        decided = Envelope(
            type=decision.type,
            data={**decision.data, "at": self.now},
            id=f"decision-{version}",
            source=SOURCE,
            subject=self.state.stream,
            streamversion=version,
        )
        evolve(self.saga, self.state, decided)

    def _check(self) -> list[str]:
        s, problems = self.scenario, []
        if s.expect_status is not None and self.state.status != s.expect_status:
            why = f" ({self.state.reason})" if self.state.reason else ""
            problems.append(f"status: expected {s.expect_status}, got {self.state.status}{why}")
        if s.expect_sent is not None and self.sent != s.expect_sent:
            problems.append(f"sent: expected {s.expect_sent}, got {self.sent}")
        if s.expect_reason is not None and self.state.reason != s.expect_reason:
            problems.append(f"reason: expected {s.expect_reason!r}, got {self.state.reason!r}")
        return problems


def build_scenarios(saga: SagaDef) -> list[SagaScenario]:
    """The saga's `tests`, as checked by the schema when the config was loaded."""
    out = []
    for item, where in saga.tests:
        then = item.get("then") or {}
        out.append(
            SagaScenario(
                name=item["name"],
                saga=saga.name,
                start=dict(item.get("start") or {}),
                given=[
                    GivenEvent(g["type"], dict(g.get("data") or {}))
                    for g in item.get("given") or []
                ],
                steps=dict(item.get("steps") or {}),
                events=[
                    Arrival(e["type"], dict(e.get("data") or {}), parse_duration(e.get("after", 0)))
                    for e in item.get("events") or []
                ],
                elapsed=parse_duration(item.get("elapsed", 0)),
                expect_status=then.get("status"),
                expect_sent=list(then["sent"]) if "sent" in then else None,
                expect_reason=then.get("reason"),
                where=where,
            )
        )
    return out
