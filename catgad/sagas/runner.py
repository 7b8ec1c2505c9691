"""Running the sagas of a service: the I/O around the pure decisions of catgad.sagas.state.

    runner = SagaRunner(config, store, sender)   # a runtime component
    await runner.start()
    state, created = await runner.begin("PlaceOrder", {...})

- Every daemon follows the store's log from the start (a LogReader without a
  checkpoint) into an index of the instances, for listings and to see the
  events that instances await. The index is rebuilt at every start: the log
  holds all of it (each instance's decisions are events of its stream).
- One daemon at a time drives a saga's instances: the holder of the lease
  `saga:<name>`. Driving means: load the instance's stream, ask `next_action`,
  and do it: append a decision (with the stream version it was decided at),
  or append the decision announcing a command and then send the command (an id
  fixed by the instance and step), then append its outcome. A conflict means
  someone else moved the instance (an operator's cancel, a second driver
  during a lease change): reload and decide again. So correctness rests on
  the store; the lease only saves work.
- A step or compensation answered 503 or timing out is tried `retry.attempts`
  times with backoff; a rejection (4xx) fails it at once. A compensation that
  fails leaves the saga `failed` until `retry`.
- Deadlines (the saga's timeout, an await's) come from stored times, so one
  that passed while no daemon ran is acted on as soon as one runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry

from catgad.aggregates.payload import check_payload
from catgad.config.cel import CelEvalError
from catgad.consumer.clock import Clock
from catgad.consumer.settings import LeasedSettings
from catgad.engine.commands import CommandResult
from catgad.envelope import Envelope, new_id
from catgad.errors import (
    CatgadError,
    ConcurrencyError,
    InvalidPayload,
    SagaConflict,
    SagaNotFound,
)
from catgad.model import Config
from catgad.observability import tracing
from catgad.observability.logs import get_logger
from catgad.reactors.decisions import Decide
from catgad.reactors.runner import Entry, ReactorRunner
from catgad.reactors.send import CommandSender, Outgoing
from catgad.sagas.metrics import SagaMetrics
from catgad.sagas.model import DECISION_PREFIX, SagaDef
from catgad.sagas.section import SAGAS
from catgad.sagas.state import (
    CANCELLED,
    COMPENSATED,
    COMPENSATION_FAILED,
    COMPLETED,
    RETRIED,
    STARTED,
    STEP_ACCEPTED,
    STEP_FAILED,
    SagaRuleError,
    SagaState,
    Send,
    Wait,
    answered,
    awaited,
    evolve,
    fold,
    next_action,
    refused,
)
from catgad.store.lease import LeaseKeeper
from catgad.store.protocol import EventStore

log = get_logger("catgad.sagas")


class _Saga:
    """One saga's index, lease and drivers."""

    def __init__(self, saga: SagaDef) -> None:
        self.saga = saga
        self.index: dict[str, SagaState] = {}
        self.arrived: dict[str, Envelope] = {}  # instance -> an awaited event that answered it
        self.starts: dict[str, Envelope] = {}  # start events whose instance is not seen yet
        self.drivers: dict[str, asyncio.Task[None]] = {}
        self.again: set[str] = set()  # instances to drive again once their driver ends
        self.deadlines: dict[str, float] = {}
        # instance -> trace context of the last event that moved it, when tracing is on: a
        # driver task runs outside the event's context, its commands continue this trace
        self.traces: dict[str, dict[str, Any]] = {}
        self.lease: LeaseKeeper | None = None
        self.counts: Counter[str] = Counter()  # instances per status

    @property
    def name(self) -> str:
        return self.saga.name


class SagaRunner(ReactorRunner):
    """The sagas of one service on one daemon; see the module docstring."""

    name = "sagas"
    lease_kind = "saga"

    def __init__(
        self,
        config: Config,
        store: EventStore,
        sender: CommandSender,
        *,
        owner: str,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        settings: LeasedSettings | None = None,
        drive: bool = True,
    ) -> None:
        self.sagas = {name: _Saga(saga) for name, saga in SAGAS.of(config).items()}
        super().__init__(
            config,
            store,
            sender,
            self.sagas,
            owner=owner,
            clock=clock,
            settings=settings or SAGAS.of(config).settings,
            drive=drive,
        )
        self.metrics = SagaMetrics(registry) if registry is not None else None
        self._by_prefix = {s.saga.stream_prefix: s for s in self.sagas.values()}
        self._starting = {
            s.saga.start_event: [
                x for x in self.sagas.values() if x.saga.start_event == s.saga.start_event
            ]
            for s in self.sagas.values()
            if s.saga.start_event
        }
        self._awaiting: dict[str, list[_Saga]] = {}
        for s in self.sagas.values():
            for event_type in s.saga.awaited_types():
                self._awaiting.setdefault(event_type, []).append(s)
        self._mine: set[str] = set()  # decisions this daemon appended, not yet seen in the log

    # -- component ------------------------------------------------------------------------------

    async def _finishing(self) -> list[asyncio.Task[None]]:
        """A command in flight finishes and its outcome is written."""
        drivers = [t for e in self.sagas.values() for t in e.drivers.values()]
        if drivers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.gather(*drivers, return_exceptions=True)
        return drivers

    def status(self) -> dict[str, Any]:
        return {
            name: {
                "driving": self._leading(entry),
                "instances": self._counts(entry),
            }
            for name, entry in self.sagas.items()
        }

    # -- the API (HTTP, tests) ------------------------------------------------------------------

    def definition(self, name: str) -> SagaDef:
        entry = self.sagas.get(name)
        if entry is None:
            raise SagaNotFound("saga", name)
        return entry.saga

    async def begin(
        self, name: str, data: Any, *, instance: str | None = None, trigger: Envelope | None = None
    ) -> tuple[SagaState, bool]:
        """Start an instance (or find the one with its id): its state, and whether it is new."""
        saga = self.definition(name)
        if not isinstance(data, dict):
            raise InvalidPayload(f"saga {name}: the start data must be a JSON object")
        if saga.schema is not None:
            data = check_payload(f"saga {name}", saga.schema, data)
        instance = instance or self._instance_id(saga, data)
        stream = saga.stream(instance)
        decision = Decide(STARTED, {"input": data, "trigger": trigger.id if trigger else None})
        entry = self.sagas[name]
        driving = self._leading(entry)  # then the driver kicked below goes on from `state`
        try:  # started, and its first step announced with it: one append
            state = await self._commit(
                entry, SagaState(name, instance, stream), decision, trigger, driving=driving
            )
        except ConcurrencyError:
            return await self.instance(name, instance), False
        if self.metrics is not None:
            self.metrics.outcome(name, "started")
        self._kick(entry, instance, known=_copy(state))  # the caller keeps `state`
        return state, True

    def _instance_id(self, saga: SagaDef, data: dict[str, Any]) -> str:
        if saga.start_id is None:
            return new_id()
        try:
            value = saga.start_id.evaluate({"data": data})
        except CelEvalError as exc:
            raise InvalidPayload(f"saga {saga.name}: start.id cannot be computed: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise InvalidPayload(
                f"saga {saga.name}: start.id gave {value!r}; an instance id is a non-empty "
                "string or an integer"
            )
        return str(value)

    async def instance(self, name: str, instance: str) -> SagaState:
        saga = self.definition(name)
        state = fold(saga, instance, await self.store.read(saga.stream(instance)))
        if state.status is None:
            raise SagaNotFound(f"{name} saga instance", instance)
        return state

    def listing(self, name: str, status: str | None = None) -> list[dict[str, Any]]:
        entry = self.sagas.get(name)
        if entry is None:
            raise SagaNotFound("saga", name)
        return [
            state.summary(entry.saga)
            for state in entry.index.values()
            if status is None or state.status == status
        ]

    async def retry(self, name: str, instance: str) -> SagaState:
        """A `failed` saga's compensation is tried again (409 for any other status)."""
        return await self._operator(
            name, instance, RETRIED, ("failed",), "only a failed saga can be retried"
        )

    async def cancel(self, name: str, instance: str, reason: str = "cancelled") -> SagaState:
        """A running saga stops and compensates what it did (409 once it is not running)."""
        return await self._operator(
            name,
            instance,
            CANCELLED,
            ("running",),
            "only a running saga can be cancelled",
            {"reason": reason},
        )

    async def _operator(
        self,
        name: str,
        instance: str,
        kind: str,
        allowed: tuple[str, ...],
        wanted: str,
        data: dict[str, Any] | None = None,
    ) -> SagaState:
        self.definition(name)
        for _ in range(10):
            state = await self.instance(name, instance)
            if state.status not in allowed or (kind == CANCELLED and state.cancelling):
                raise SagaConflict(name, instance, state.status, wanted)
            try:
                decision = Decide(kind, dict(data or {}))
                await self._commit(self.sagas[name], state, decision, None, ahead=False)
            except ConcurrencyError:
                continue  # the driver moved it meanwhile: look again
            self._kick(self.sagas[name], instance)
            return await self.instance(name, instance)
        raise SagaConflict(name, instance, "changing", "try again")

    async def settled(self, name: str, instance: str) -> SagaState:
        """Wait until the instance exists and is completed, compensated or failed (tests,
        tools; bound it with asyncio.timeout)."""
        entry = self.sagas.get(name)
        if entry is None:
            raise SagaNotFound("saga", name)
        done = ("completed", "compensated", "failed")
        while True:  # the index follows every decision: the store is read when it says done
            self._changed.clear()
            known = entry.index.get(instance)
            if known is not None and known.status in done:
                state = await self.instance(name, instance)
                if state.status in done:  # the index may lag behind (a retry just asked)
                    return state
            await self._changed.wait()

    # -- following the log (the LogReader's sink) -------------------------------------------------

    async def handle(self, events: list[Envelope]) -> int:
        for event in events:
            subject = event.subject or ""
            if event.type.startswith(DECISION_PREFIX) and subject.startswith("Saga-"):
                self._decided(subject, event)
            starting = self._starting.get(event.type)
            if starting:
                for entry in starting:
                    with tracing.event_span("saga start", event, **{"catgad.saga": entry.name}):
                        self._start_event(entry, event)
            waiting = self._awaiting.get(event.type)
            if waiting:
                for entry in waiting:
                    self._answer(entry, event)
        if len(events) < self.loop.settings.batch:
            self._idle()
        if self._caught_up.is_set():
            for entry in self.sagas.values():
                if self._leading(entry):
                    await self._start_pending(entry)
        self._refresh_metrics()
        return len(events)

    def _decided(self, subject: str, event: Envelope) -> None:
        self._changed.set()
        for prefix, entry in self._by_prefix.items():
            if subject.startswith(prefix):
                instance = subject[len(prefix) :]
                state = entry.index.get(instance)
                if state is None:
                    state = entry.index[instance] = SagaState(entry.saga.name, instance, subject)
                was = state.status
                evolve(entry.saga, state, event)
                if state.status != was:
                    if was is not None:
                        entry.counts[was] -= 1
                    entry.counts[str(state.status)] += 1
                if event.type == STARTED:
                    entry.starts.pop(instance, None)
                if state.status == "running" and state.sent is None:
                    entry.arrived.pop(instance, None)  # the step it answered is done
                if event.id in self._mine:  # its driver wrote it, and drives on
                    self._mine.discard(event.id)
                elif self._caught_up.is_set():
                    self._kick(entry, instance)
                return

    def _start_event(self, entry: _Saga, event: Envelope) -> None:
        if not isinstance(event.data, dict):
            return
        try:
            instance = self._instance_id(entry.saga, event.data)
        except InvalidPayload as exc:
            log.warning(
                "a start event gives no instance id",
                saga=entry.saga.name,
                event_id=event.id,
                error=exc.detail,
            )
            return
        if instance not in entry.index:
            entry.starts[instance] = event
        tracing.remember(entry.traces, instance, event)

    async def _start_pending(self, entry: _Saga) -> None:
        for instance, event in list(entry.starts.items()):
            entry.starts.pop(instance, None)
            if instance in entry.index:
                continue
            try:
                await self.begin(
                    entry.saga.name, dict(event.data), instance=instance, trigger=event
                )
            except CatgadError as exc:
                log.warning(
                    "saga not started",
                    saga=entry.saga.name,
                    instance=instance,
                    event_id=event.id,
                    error=exc.detail,
                )

    def _answer(self, entry: _Saga, event: Envelope) -> None:
        answered = False
        for instance, state in entry.index.items():
            if awaited(entry.saga, state, event) is not None:
                entry.arrived.setdefault(instance, event)
                tracing.remember(entry.traces, instance, event)
                answered = True
                if self._caught_up.is_set():
                    self._kick(entry, instance)
        if not answered and self.metrics is not None:
            self.metrics.ignored.labels(entry.saga.name, event.type).inc()

    # -- driving ----------------------------------------------------------------------------------

    async def _supervise(self, entry: Entry) -> None:
        await self._caught_up.wait()  # the index is whole: every unfinished instance is known
        await super()._supervise(entry)

    async def _leading_changed(self, entry: _Saga, leading: bool) -> None:
        """Drive every unfinished instance whenever the lease is (re)gained."""
        if not leading:
            return
        log.info("driving saga instances", saga=entry.saga.name, owner=self.owner)
        await self._start_pending(entry)
        for instance, state in list(entry.index.items()):
            if state.status in ("running", "compensating"):
                self._kick(entry, instance)

    def _kick(self, entry: _Saga, instance: str, known: SagaState | None = None) -> None:
        """Drive the instance now (or again, after the drive under way); `known`: its state as
        just appended here, so the driver need not read it (a conflict makes it read)."""
        if not self._leading(entry):
            return
        entry.deadlines.pop(instance, None)
        if instance in entry.drivers:
            entry.again.add(instance)
            return
        task = asyncio.create_task(
            self._drive(entry, instance, known), name=f"saga:{entry.saga.name}:{instance}"
        )
        entry.drivers[instance] = task

    async def _drive(self, entry: _Saga, instance: str, known: SagaState | None) -> None:
        try:
            while True:
                entry.again.discard(instance)
                try:
                    await self._drive_once(entry, instance, known)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the store failed: try again after a pause
                    detail = exc.detail if isinstance(exc, CatgadError) else repr(exc)
                    log.warning(
                        "saga step could not be taken; retrying",
                        saga=entry.saga.name,
                        instance=instance,
                        error=detail,
                    )
                    entry.deadlines[instance] = self.clock.now() + 1.0
                    self._wake.set()
                known = None  # once more: from the stream
                if instance not in entry.again or not self._leading(entry):
                    return
        finally:
            entry.drivers.pop(instance, None)

    async def _drive_once(self, entry: _Saga, instance: str, known: SagaState | None) -> None:
        """Drive the instance until it waits, ends or fails: read once (unless `known`), then
        keep the state in hand, each decision applied to it as appended (re-read after a
        conflict only)."""
        saga = entry.saga
        state = known if known is not None else await self.instance(saga.name, instance)
        while self._leading(entry):
            arrived = entry.arrived.get(instance)
            try:
                action = next_action(saga, state, self.clock.now(), arrived)
            except SagaRuleError as exc:  # the saga's own CEL failed: a step that cannot run
                action = self._rule_failed(saga, state, exc)
            if action is None:
                entry.arrived.pop(instance, None)
                return
            if isinstance(action, Wait):
                if action.until is not None:
                    entry.deadlines[instance] = action.until
                    self._wake.set()
                return
            try:
                if isinstance(action, Decide):
                    state = await self._commit(entry, state, action, None, driving=True)
                else:
                    state = await self._send_and_record(entry, saga, state, action)
            except ConcurrencyError:  # moved elsewhere meanwhile: decide again on what is stored
                state = await self.instance(saga.name, instance)

    def _rule_failed(self, saga: SagaDef, state: SagaState, exc: SagaRuleError) -> Decide:
        reason = f"{exc.where}: {exc.why}"
        if state.status == "compensating":
            target = state.undo[state.undone]
            return Decide(COMPENSATION_FAILED, {"event_id": target.id, "reason": reason})
        return Decide(
            STEP_FAILED, {"step": state.step, "name": state.current_step(saga), "reason": reason}
        )

    def _count(self, saga: SagaDef, kind: str) -> None:
        if self.metrics is None:
            return
        outcome = {
            COMPLETED: "completed",
            COMPENSATED: "compensated",
            COMPENSATION_FAILED: "failed",
        }.get(kind)
        if outcome is not None:
            self.metrics.outcome(saga.name, outcome)

    async def _send_and_record(
        self, entry: _Saga, saga: SagaDef, state: SagaState, action: Send
    ) -> SagaState:
        """Announce (if not yet), send, and record the outcome with what follows from it."""
        if action.announce is not None:
            state = await self._commit(
                entry, state, action.announce, None, ahead=False, driving=True
            )
        with tracing.continued("saga step", entry.traces.get(state.id), saga=saga.name):
            outcome, result, reason, status = await self._send(saga, state, action, state.cause)
        if outcome == "accepted":
            assert result is not None
            decision = answered(saga, state, action, _events(result))
            if decision.type == STEP_ACCEPTED:
                for event in result.events:  # the command itself may carry the awaited outcome
                    if awaited(saga, state, _correlated(event, state)) is not None:
                        entry.arrived.setdefault(state.id, _correlated(event, state))
                        break
        else:
            decision = refused(saga, state, action, reason or "failed", status)
        return await self._commit(entry, state, decision, None, driving=True)

    async def _send(
        self, saga: SagaDef, state: SagaState, action: Send, cause: str | None
    ) -> tuple[str, CommandResult | None, str | None, int | None]:
        """('accepted', result, None, None) or ('failed', None, reason, status)."""
        command = Outgoing(
            type=action.command,
            data=action.data,
            id=action.command_id,
            correlationid=state.correlation,
            causationid=cause,
        )
        label = "compensate" if action.compensation else (state.current_step(saga) or "?")
        attempts = max(saga.retry.attempts, 1)
        for attempt in range(1, attempts + 1):
            started = self.clock.now()
            try:
                result = await self.sender.send(command)
            except CatgadError as exc:
                if self.metrics is not None:
                    self.metrics.step_seconds.labels(saga.name, label).observe(
                        self.clock.now() - started
                    )
                if not exc.retryable:
                    return (
                        "failed",
                        None,
                        f"{action.command} answered {exc.status}: {exc.detail}",
                        exc.status,
                    )
                reason = f"{action.command} answered {exc.status}: {exc.detail}"
            except Exception as exc:  # a bug or a lost connection: like a 503
                log.exception("saga command failed", saga=saga.name, command=action.command)
                reason = f"{action.command} failed: {exc!r}"
            else:
                if self.metrics is not None:
                    self.metrics.step_seconds.labels(saga.name, label).observe(
                        self.clock.now() - started
                    )
                return "accepted", result, None, None
            if attempt < attempts:
                delay = saga.retry.backoff * 2 ** (attempt - 1)
                log.info(
                    "saga command retried",
                    saga=saga.name,
                    instance=state.id,
                    command=action.command,
                    attempt=attempt,
                    error=reason,
                )
                await self.clock.wait(asyncio.Event(), self.clock.now() + delay)
        return "failed", None, f"{reason} (after {attempts} attempts)", 503

    async def _commit(
        self,
        entry: _Saga,
        state: SagaState,
        decision: Decide,
        trigger: Envelope | None,
        *,
        ahead: bool = True,
        driving: bool = False,
    ) -> SagaState:
        """Append `decision` and, with `ahead`, every decision that follows from it without
        I/O, up to the announcement of the next command: one append per command sent. The
        decisions are applied to `state` (in place) as they are made; on any error the
        caller reads the instance again."""
        saga = entry.saga
        expected = state.version
        # ids derived from a command id fixed by the stream and version (catgad.ids): a commit
        # made again after a crash is the same command, kept once; a NATS store needs no claims
        commit = f"{state.stream}@{expected}"
        now = self.clock.now()
        made = [self._decision(state, decision, trigger, commit, 0, now)]
        while ahead:
            try:
                then = next_action(saga, state, self.clock.now(), entry.arrived.get(state.id))
            except SagaRuleError:
                break  # the driver meets it again, and records it
            if isinstance(then, Decide):
                made.append(self._decision(state, then, None, commit, len(made), now))
            elif isinstance(then, Send) and then.announce is not None:
                made.append(self._decision(state, then.announce, None, commit, len(made), now))
                break
            else:
                break
        await self.append_decisions(state.stream, made, expected, commit)
        if driving:  # its driver goes on from here: the follower need not wake it for these
            self._mine.update(e.id for e in made)
        for envelope in made:
            self._count(saga, envelope.type)
        return state

    def _decision(
        self,
        state: SagaState,
        decision: Decide,
        trigger: Envelope | None,
        commit: str,
        index: int,
        now: float,
    ) -> Envelope:
        """The decision's envelope, the `index`-th of `commit`, applied to `state`."""
        cause = trigger.id if trigger is not None else state.cause
        envelope = self.decision(state.stream, commit, index, decision, now, cause)
        evolve(self.sagas[state.saga].saga, state, envelope)
        return envelope

    # -- timers -----------------------------------------------------------------------------------

    async def _timers(self) -> None:
        """Drive instances whose deadline has come."""
        while not self._stopping:
            soonest = min(
                (due for entry in self.sagas.values() for due in entry.deadlines.values()),
                default=None,
            )
            self._wake.clear()
            await self.clock.wait(self._wake, soonest)
            now = self.clock.now()
            for entry in self.sagas.values():
                for instance, due in list(entry.deadlines.items()):
                    if due <= now:
                        self._kick(entry, instance)

    # -- metrics ----------------------------------------------------------------------------------

    def _counts(self, entry: _Saga) -> dict[str, int]:
        return {status: entry.counts[status] for status in ("running", "compensating", "failed")}

    def _refresh_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.refresh(
                {
                    (name, status): n
                    for name, e in self.sagas.items()
                    for status, n in self._counts(e).items()
                }
            )


def _events(result: CommandResult) -> list[dict[str, Any]]:
    return [
        {"id": e.id, "type": e.type, "data": e.data, "subject": e.subject} for e in result.events
    ]


def _correlated(event: Envelope, state: SagaState) -> Envelope:
    """An event of the step's own command: it answers the instance by construction."""
    if event.correlationid == state.correlation:
        return event
    return dataclasses.replace(event, correlationid=state.correlation)


def _copy(state: SagaState) -> SagaState:
    """A state to drive apart from one handed to a caller (evolve appends to its lists and
    sets keys of `steps`; it replaces the other fields)."""
    return dataclasses.replace(
        state,
        steps=dict(state.steps),
        produced=list(state.produced),
        undo=list(state.undo),
        log=list(state.log),
    )
