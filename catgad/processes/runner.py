"""Running the processes of a service: the I/O around the pure decisions of
catgad.processes.state.

    runner = ProcessRunner(config, store, sender, owner=...)   # a runtime component
    await runner.start()
    await runner.decide("Fulfilment", "o1", approve=True, token="finance", comment="ok")

- Every daemon follows the store's log from the start into an index of the
  instances (each instance's decisions are events of its stream), for listings.
- The daemon holding the lease `process:<name>` acts: it decides on each event
  of the process in log order (start, transition, or ignored), fires the timers
  that fall due, and sends the commands a state entry announced. Decisions are
  appended at the instance's version as read, so a timer and an event, or an
  approval and a timer, can never both move an instance: the loser's append
  fails, it reads again and decides again on the new state (usually: nothing).
- Each decision records up to which log position the instance's events have been
  decided on, so after a restart (or a takeover) an event is decided on once:
  the events a daemon sees while catching up are kept per instance and decided
  on only once the whole log is read, those already covered dropped.
- Timers are kept in a heap by due time, built from the log: one that fell due
  while no daemon ran fires as soon as the catch-up ends, never before it is due.
- Commands are announced by a decision before they are sent, then marked
  delivered; announced but undelivered ones (a crash came between) are sent again
  under the same ids, which the store keeps once.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as Counting

from catgad.consumer.clock import Clock, rfc3339
from catgad.consumer.settings import LeasedSettings
from catgad.envelope import Envelope
from catgad.errors import CatgadError, ConcurrencyError, NotAwaitingDecision, ProcessNotFound
from catgad.model import Config
from catgad.observability import tracing
from catgad.observability.logs import get_logger
from catgad.processes.model import DECISION_PREFIX, ProcessDef
from catgad.processes.section import PROCESSES
from catgad.processes.state import (
    DELIVERED,
    TIMER_FIRED,
    TIMER_SCHEDULED,
    NotWaiting,
    ProcessRuleError,
    ProcessState,
    begin,
    due,
    evolve,
    fold,
    instance_of,
    on_approval,
    on_event,
    on_time,
)
from catgad.reactors.decisions import Decide
from catgad.reactors.runner import ReactorRunner
from catgad.reactors.send import CommandSender, Outgoing
from catgad.store.lease import LeaseKeeper
from catgad.store.protocol import EventStore

log = get_logger("catgad.processes")
TIMERS_AT_ONCE = 64  # due timers fired side by side


class _Process:
    def __init__(self, process: ProcessDef) -> None:
        self.process = process
        self.index: dict[str, ProcessState] = {}
        self.pending: dict[str, list[Envelope]] = {}  # events seen while catching up, per id
        self.lease: LeaseKeeper | None = None
        self.timers: list[tuple[float, str]] = []  # (due, instance), a heap; stale entries ok
        self.lock: dict[str, asyncio.Lock] = {}  # one decision at a time per instance, here

    @property
    def name(self) -> str:
        return self.process.name

    def lock_of(self, instance: str) -> asyncio.Lock:
        lock = self.lock.get(instance)
        if lock is None:
            lock = self.lock[instance] = asyncio.Lock()
        return lock


class ProcessRunner(ReactorRunner):
    """The processes of one service on one daemon; see the module docstring."""

    name = "processes"
    lease_kind = "process"

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
        self.processes = {name: _Process(p) for name, p in PROCESSES.of(config).items()}
        super().__init__(
            config,
            store,
            sender,
            self.processes,
            owner=owner,
            clock=clock,
            settings=settings or PROCESSES.of(config).settings,
            drive=drive,
        )
        self._by_prefix = {p.process.stream_prefix: p for p in self.processes.values()}
        self._reading: dict[str, list[_Process]] = {}
        for entry in self.processes.values():
            for event_type in entry.process.events():
                self._reading.setdefault(event_type, []).append(entry)
        self._handled = 0  # log position up to which events were decided on here
        self._metrics(registry)

    def status(self) -> dict[str, Any]:
        return {
            name: {"driving": self._leading(e), "instances": len(e.index)}
            for name, e in self.processes.items()
        }

    # -- the API ------------------------------------------------------------------------------

    def definition(self, name: str) -> ProcessDef:
        entry = self.processes.get(name)
        if entry is None:
            raise ProcessNotFound("process", name)
        return entry.process

    async def instance(self, name: str, instance: str) -> ProcessState:
        process = self.definition(name)
        state = fold(process, instance, await self.store.read(process.stream(instance)))
        if state.status is None:
            raise ProcessNotFound(f"{name} process instance", instance)
        return state

    def listing(self, name: str, state: str | None = None) -> list[dict[str, Any]]:
        self.definition(name)
        return [
            {
                "id": s.id,
                "state": s.state,
                "status": s.status,
                "version": s.version,
                "updated_at": rfc3339(s.updated_at),
            }
            for s in self.processes[name].index.values()
            if state is None or s.state == state
        ]

    def states(self, name: str) -> list[ProcessState]:
        """The instances this daemon knows of, as its index holds them (the operator inbox
        reads their pending approvals and timers); read them, do not change them."""
        self.definition(name)
        return list(self.processes[name].index.values())

    async def decide(
        self, name: str, instance: str, *, approve: bool, token: str, comment: str | None
    ) -> ProcessState:
        """A person's decision; NotAwaitingDecision (409) when the instance waits for none."""
        process = self.definition(name)
        entry = self.processes[name]
        async with entry.lock_of(instance):
            for _ in range(10):
                state = await self.instance(name, instance)
                try:
                    made = on_approval(
                        process, state, approve, token, comment, self.clock.now(), self._handled
                    )
                except NotWaiting:
                    raise NotAwaitingDecision(name, instance, state.state) from None
                try:
                    state = await self._commit(entry, state, made)
                except ConcurrencyError:
                    continue
                await self._deliver(entry, state)
                return state
        raise NotAwaitingDecision(name, instance, "changing")

    async def settled(self, name: str, instance: str, state: str) -> ProcessState:
        """Wait until the instance is in `state` (tests; bound it with asyncio.timeout)."""
        entry = self.processes[name]
        while True:
            self._changed.clear()
            known = entry.index.get(instance)
            if known is not None and known.state == state and not known.undelivered:
                return await self.instance(name, instance)
            await self._changed.wait()

    # -- following the log -----------------------------------------------------------------------

    async def handle(self, events: list[Envelope]) -> int:
        for event in events:
            subject = event.subject or ""
            if event.type.startswith(DECISION_PREFIX) and subject.startswith("Process-"):
                self._decided(subject, event)
            reading = self._reading.get(event.type)
            if reading:
                for entry in reading:
                    with tracing.event_span(
                        "process step", event, **{"catgad.process": entry.name}
                    ):
                        await self._event(entry, event)
            self._handled = max(self._handled, event.position or 0)
        if len(events) < self.loop.settings.batch:
            self._idle()
        return len(events)

    def _decided(self, subject: str, event: Envelope) -> None:
        self._changed.set()
        for prefix, entry in self._by_prefix.items():
            if not subject.startswith(prefix):
                continue
            instance = subject[len(prefix) :]
            state = entry.index.get(instance)
            if state is None:
                state = entry.index[instance] = ProcessState(entry.process.name, instance, subject)
            if (event.streamversion or 0) > state.version:  # not applied in hand already
                evolve(state, event)
                self._indexed(entry, state)
            return

    def _indexed(self, entry: _Process, state: ProcessState) -> None:
        """Keep what the index derives from a state: its timer, the events it covered."""
        when = due(state)
        if when is not None:
            heapq.heappush(entry.timers, (when, state.id))
            self._wake.set()
        pending = entry.pending.get(state.id)
        if pending:
            entry.pending[state.id] = [e for e in pending if (e.position or 0) > state.upto]

    async def _event(self, entry: _Process, event: Envelope) -> None:
        instance = instance_of(entry.process, event)
        if instance is None:
            return
        state = entry.index.get(instance)
        if state is not None and (event.position or 0) <= state.upto:
            return  # decided on already
        if not (self._caught_up.is_set() and self._leading(entry)):
            entry.pending.setdefault(instance, []).append(event)  # decided on later, in order
            return
        await self._decide_event(entry, instance, event)

    async def _decide_event(self, entry: _Process, instance: str, event: Envelope) -> None:
        process = entry.process
        async with entry.lock_of(instance):
            for _ in range(10):
                state = entry.index.get(instance)
                try:
                    if state is None or state.status is None:
                        if event.type not in process.start:
                            self._ignored.labels(process.name, event.type).inc()
                            return
                        state = ProcessState(process.name, instance, process.stream(instance))
                        made = begin(process, instance, event, self.clock.now())
                    else:
                        if (event.position or 0) <= state.upto:
                            return
                        made = on_event(process, state, event, self.clock.now())
                        if not made:
                            self._ignored.labels(process.name, event.type).inc()
                            return
                    state = await self._commit(entry, state, made)
                except ConcurrencyError:
                    await self._reload(entry, instance)
                    continue
                except ProcessRuleError as exc:
                    log.warning(
                        "a process rule failed: the event is ignored",
                        process=process.name,
                        instance=instance,
                        event_id=event.id,
                        rule=exc.where,
                        error=exc.why,
                    )
                    return
                await self._deliver(entry, state)
                return

    async def _reload(self, entry: _Process, instance: str) -> None:
        process = entry.process
        state = fold(process, instance, await self.store.read(process.stream(instance)))
        if state.status is not None:
            entry.index[instance] = state
            self._indexed(entry, state)

    # -- acting ----------------------------------------------------------------------------------

    async def _supervise(self, entry: _Process) -> None:
        """On every gain of the lease (once caught up): decide on the events kept meanwhile,
        and send what was announced but not delivered."""
        await self._caught_up.wait()
        leading = False
        while not self._stopping:
            now = self._leading(entry)
            if now and not leading:
                log.info("driving process instances", process=entry.process.name, owner=self.owner)
                try:
                    await self._catch_up(entry)
                except Exception as exc:  # the store failed: the next gain tries again
                    log.warning(
                        "process catch-up failed",
                        process=entry.process.name,
                        error=getattr(exc, "detail", repr(exc)),
                    )
                    now = False
                self._wake.set()
            leading = now
            if entry.lease is None:
                return
            await entry.lease.wait_change(entry.lease.period)

    async def _catch_up(self, entry: _Process) -> None:
        pending, entry.pending = entry.pending, {}
        for instance, events in pending.items():
            for event in sorted(events, key=lambda e: e.position or 0):
                await self._decide_event(entry, instance, event)
        for state in list(entry.index.values()):
            if state.undelivered:
                await self._deliver(entry, state)

    async def _commit(
        self, entry: _Process, state: ProcessState, made: list[Decide]
    ) -> ProcessState:
        """Append `made` at the version `state` was read at; once they are stored (never
        before: readers of the index read the store), the state after them, in the index."""
        expected = state.version
        commit = f"{state.stream}@{expected}"
        now = self.clock.now()
        envelopes = [
            self.decision(state.stream, commit, index, decision, now, None)
            for index, decision in enumerate(made)
        ]
        result = await self.append_decisions(state.stream, envelopes, expected, commit)
        for stored in result.events:  # the follower may have applied them meanwhile
            if (stored.streamversion or 0) > state.version:
                evolve(state, stored)
        known = entry.index.get(state.id)
        if known is None or known.version <= state.version:
            entry.index[state.id] = state
        self._indexed(entry, state)
        self._count(entry.process, made, now)
        return state

    async def _deliver(self, entry: _Process, state: ProcessState) -> None:
        """Send the commands announced and not yet delivered; then mark them delivered."""
        if not state.undelivered:
            return
        outcomes = []
        for command in list(state.undelivered):
            outgoing = Outgoing(
                type=command["command"],
                data=command.get("data") or {},
                id=command["command_id"],
                correlationid=state.stream,
                causationid=command.get("cause") or state.stream,  # the event, or the instance
            )
            try:
                result = await self.sender.send(outgoing)
                outcomes.append(
                    {
                        "command_id": outgoing.id,
                        "command": outgoing.type,
                        "outcome": "accepted",
                        "stream": result.stream,
                    }
                )
            except CatgadError as exc:
                if exc.retryable:
                    log.warning(
                        "process command not delivered yet; retried later",
                        process=entry.process.name,
                        instance=state.id,
                        command=outgoing.type,
                        error=exc.detail,
                    )
                    self._retry_at(entry, state.id, self.clock.now() + 5.0)
                    break
                outcomes.append(
                    {
                        "command_id": outgoing.id,
                        "command": outgoing.type,
                        "outcome": f"refused {exc.status}",
                        "reason": exc.detail,
                    }
                )
        if outcomes:
            try:
                await self._commit(entry, state, [Decide(DELIVERED, {"commands": outcomes})])
            except ConcurrencyError:
                await self._reload(entry, state.id)  # delivered again later: same ids, kept once

    def _retry_at(self, entry: _Process, instance: str, when: float) -> None:
        heapq.heappush(entry.timers, (when, instance))
        self._wake.set()

    async def _timers(self) -> None:
        """Fire the timers that fall due, on the leading daemon, once caught up."""
        await self._caught_up.wait()
        while not self._stopping:
            soonest = min(
                (e.timers[0][0] for e in self.processes.values() if e.timers and self._leading(e)),
                default=None,
            )
            self._wake.clear()
            await self.clock.wait(self._wake, soonest)
            now = self.clock.now()
            for entry in self.processes.values():
                if not self._leading(entry):
                    continue
                due_now: list[str] = []
                while entry.timers and entry.timers[0][0] <= now:
                    due_now.append(heapq.heappop(entry.timers)[1])
                # fired side by side, a bounded number at once: their appends share the
                # store's round trips (one instance is still decided one at a time: its lock)
                for start in range(0, len(due_now), TIMERS_AT_ONCE):
                    batch = dict.fromkeys(due_now[start : start + TIMERS_AT_ONCE])
                    await asyncio.gather(*(self._fire_or_retry(entry, i, now) for i in batch))

    async def _fire_or_retry(self, entry: _Process, instance: str, now: float) -> None:
        try:
            await self._fire(entry, instance)
        except Exception as exc:  # the store failed: try again shortly
            log.warning(
                "process timer not fired yet",
                process=entry.process.name,
                instance=instance,
                error=getattr(exc, "detail", repr(exc)),
            )
            self._retry_at(entry, instance, now + 1.0)

    async def _fire(self, entry: _Process, instance: str) -> None:
        async with entry.lock_of(instance):
            for _ in range(10):
                state = entry.index.get(instance)
                if state is None:
                    return
                if state.undelivered:  # a delivery to retry
                    await self._deliver(entry, state)
                made = on_time(entry.process, state, self.clock.now(), self._handled)
                if not made:
                    return
                try:
                    state = await self._commit(entry, state, made)
                except ConcurrencyError:
                    await self._reload(entry, instance)
                    continue
                await self._deliver(entry, state)
                return

    # -- metrics ---------------------------------------------------------------------------------

    def _metrics(self, registry: CollectorRegistry | None) -> None:
        registry = registry or CollectorRegistry()
        self._transitions = Counting(
            "catgad_process_transitions",
            "Transitions, per process and the way they came (event, timer, approve, reject).",
            ["process", "by"],
            registry=registry,
        )
        self._timers_scheduled = Counting(
            "catgad_process_timers_scheduled",
            "Timers scheduled on entering a state.",
            ["process"],
            registry=registry,
        )
        self._timers_fired = Counting(
            "catgad_process_timers_fired", "Timers that fired.", ["process"], registry=registry
        )
        self._lateness = Histogram(
            "catgad_process_timer_lateness_seconds",
            "How late a timer fired (fired minus due).",
            ["process"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 300),
            registry=registry,
        )
        self._ignored = Counting(
            "catgad_process_events_ignored",
            "Events read by a process that moved no instance (finished, none, or no transition).",
            ["process", "event"],
            registry=registry,
        )
        gauge = Gauge(
            "catgad_process_instances",
            "Instances per process and state.",
            ["process", "state"],
            registry=registry,
        )
        approvals = Gauge(
            "catgad_process_approvals_pending",
            "Instances waiting for a person's decision.",
            ["process"],
            registry=registry,
        )
        oldest = Gauge(
            "catgad_process_approval_age_seconds",
            "How long the oldest pending approval has waited.",
            ["process"],
            registry=registry,
        )
        for name, entry in self.processes.items():
            for state in entry.process.states:
                gauge.labels(name, state).set_function(_in_state(entry, state))
            approvals.labels(name).set_function(_awaiting(entry))
            oldest.labels(name).set_function(self._oldest_approval(entry))

    def _oldest_approval(self, entry: _Process) -> Callable[[], float]:
        def age() -> float:
            asked = [float(x.approval["at"]) for x in entry.index.values() if x.approval]
            return max(0.0, self.clock.now() - min(asked)) if asked else 0.0

        return age

    def _count(self, process: ProcessDef, made: list[Decide], now: float) -> None:
        for decision in made:
            if decision.type.endswith("Transitioned"):
                self._transitions.labels(process.name, str(decision.data.get("by"))).inc()
            elif decision.type == TIMER_SCHEDULED:
                self._timers_scheduled.labels(process.name).inc()
            elif decision.type == TIMER_FIRED:
                self._timers_fired.labels(process.name).inc()
                self._lateness.labels(process.name).observe(
                    max(0.0, now - float(decision.data["due"]))
                )


def _in_state(entry: _Process, state: str) -> Callable[[], float]:
    return lambda: float(sum(1 for x in entry.index.values() if x.state == state))


def _awaiting(entry: _Process) -> Callable[[], float]:
    return lambda: float(sum(1 for x in entry.index.values() if x.approval))
