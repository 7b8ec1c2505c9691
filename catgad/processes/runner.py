"""Running the processes of a service: the I/O around the pure decisions of
catgad.processes.state.

    runner = ProcessRunner(config, store, sender, owner=...)   # a runtime component
    await runner.start()
    await runner.decide("Fulfilment", "o1", approve=True, token="finance", comment="ok")

- The instance streams (`Process-<name>-<id>`) are the truth. Beside them the store keeps a
  process index (catgad.store.process_index): a row per instance with its state and when it
  is next due (a timer, or commands to deliver). Listings, metrics and the timers read it,
  so no daemon holds every instance in memory nor reads the whole log to start.
- The daemon holding the lease `process:<name>` acts: its log follower resumes from the
  checkpoint `process:<name>` and decides on each event of the process (start, transition,
  or ignored), each instance's events in log order and different instances' side by side,
  reading the instance from its stream when it is not in a bounded cache; its timer task
  asks the index what is due and fires it; it sends the commands a state entry announced.
  Decisions are appended at the instance's version as read, so a timer and an event, or an
  approval and a timer, can never both move an instance: the loser's append fails, it reads
  again and decides again on the new state (usually: nothing).
- The index is written after each decision is appended, and repaired by the follower: every
  decision it reads whose row it has not seen written is read from the stream and put, before
  the checkpoint moves past it. So a crash between an append and its index write is healed
  on the next start (the checkpoint is behind the decision); an entry met stale (the timer
  fired or was cancelled since) is replaced by the stream's row and dropped.
- Each decision records up to which log position the instance's events have been decided
  on, so after a restart (or a takeover) an event is decided on once. Timers fire once the
  follower has caught up, so an event that came first wins over a timer due meanwhile.
- Commands are announced by a decision before they are sent, then marked delivered; announced
  but undelivered ones (a crash came between) keep the instance due in the index, so they
  are sent again under the same ids, which the store keeps once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as Counting

from catgad.consumer.clock import Clock, rfc3339
from catgad.consumer.loop import LogReader, LoopSettings
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
from catgad.store.process_index import (
    DueTimer,
    InstanceRow,
    ProcessIndex,
    Summary,
    process_index,
)
from catgad.store.protocol import AppendResult, Coordination, EventStore

log = get_logger("catgad.processes")
TIMERS_AT_ONCE = 64  # due timers fired side by side
INSTANCES_AT_ONCE = 64  # instances the log follower decides on side by side
DUE_BATCH = 512  # due entries asked of the index at once
CACHED = 10_000  # instances kept in memory per process (the most recently used)
SUMMARY_EVERY = 5.0  # seconds between two reads of the metrics' summary from the index


def wake_at(state: ProcessState) -> float | None:
    """When the runner must next act on an instance: at once when commands announced wait to
    be delivered, else when its timer falls due; None when nothing is pending."""
    if state.undelivered:
        return state.updated_at
    return due(state)


def row_of(state: ProcessState) -> InstanceRow:
    asked = float(state.approval["at"]) if state.approval else None
    return InstanceRow(
        state.id, state.state, state.status, state.version, state.updated_at, wake_at(state), asked
    )


class _Process:
    def __init__(self, process: ProcessDef) -> None:
        self.process = process
        self.reads = set(process.events())
        self.lease: LeaseKeeper | None = None
        self.reader: LogReader | None = None
        self.caught_up = asyncio.Event()  # the follower reached the head since gaining the lease
        self.cache: OrderedDict[str, ProcessState] = OrderedDict()
        self.indexed: dict[str, int] = {}  # instance -> version known written to the index
        self.retries: list[tuple[float, str]] = []  # (when, instance): deliveries, failed fires
        self.later: dict[str, float] = {}  # instance -> not before (a delivery being retried)
        # one decision at a time per instance, here: a lock and how many hold or wait for it
        self.locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self.summary = Summary({}, 0, None)
        self.unindexed: dict[str, ProcessState] = {}  # decided, row not yet put (batched)
        self.batching = 0  # follower batches and timer rounds under way: rows put at their end
        self.flushing: asyncio.Task[None] | None = None  # the index write under way
        self.rows_added = self.rows_put = 0  # rows decided, and how many of them were put

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def position(self) -> int:
        """Log position up to which events were decided on here (0: not driving)."""
        return self.reader.position if self.reader is not None else 0

    def cached(self, instance: str) -> ProcessState | None:
        state = self.cache.get(instance)
        if state is not None:
            self.cache.move_to_end(instance)
        return state

    def keep(self, state: ProcessState) -> None:
        known = self.cache.get(state.id)
        if known is not None and known.version > state.version:
            return
        self.cache[state.id] = state
        self.cache.move_to_end(state.id)
        while len(self.cache) > CACHED:
            gone, _ = self.cache.popitem(last=False)
            self.indexed.pop(gone, None)

    @contextlib.asynccontextmanager
    async def lock(self, instance: str) -> Any:
        held = self.locks.get(instance)
        if held is None:
            held = self.locks[instance] = (asyncio.Lock(), [0])
        lock, users = held
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self.locks[instance]


class _LeaseLost(Exception):
    def __init__(self, handled: int) -> None:
        self.handled = handled


class _Follower:
    """The log follower's sink for one process (its LogReader holds the process's lease)."""

    def __init__(self, runner: ProcessRunner, entry: _Process) -> None:
        self.runner = runner
        self.entry = entry

    async def handle(self, events: list[Envelope]) -> int:
        return await self.runner.follow(self.entry, events)


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
        index: ProcessIndex | None = None,
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
        self.index = index if index is not None else process_index(store)
        self._metrics(registry)

    def status(self) -> dict[str, Any]:
        return {
            name: {"driving": self._leading(e), "instances": sum(e.summary.states.values())}
            for name, e in self.processes.items()
        }

    # -- component: a follower per process, on its lease ------------------------------------------

    async def start(self) -> None:
        if not self.processes:
            return
        self._running = True
        self._tasks.append(asyncio.create_task(self._summaries(), name="processes-summary"))
        if not self.drive:
            return
        resumable = isinstance(self.store, Coordination) and self.index.durable
        for entry in self.processes.values():
            entry.lease = self._lease_for(entry)
            entry.reader = LogReader(
                self.store,
                _Follower(self, entry),
                name=f"{self.lease_kind}:{entry.name}",
                settings=LoopSettings(
                    poll_interval=self.settings.poll_interval, linger=self.settings.linger
                ),
                lease=entry.lease,
                checkpointed=resumable and entry.lease is not None,
                on_active=lambda _, entry=entry: entry.caught_up.clear(),  # type: ignore[misc]
                on_idle=lambda entry=entry: self._reached_head(entry),  # type: ignore[misc]
            )
            entry.reader.start()  # and its lease
        self._start_drivers()

    async def stop(self) -> None:
        await self._halt()
        for entry in self.processes.values():
            if entry.reader is not None:
                await entry.reader.stop()  # releases the lease
            elif entry.lease is not None:
                await entry.lease.stop(release=True)

    def notify(self, result: AppendResult | None = None) -> None:
        for entry in self.processes.values():
            if entry.reader is not None:
                entry.reader.notify(result)

    def _reached_head(self, entry: _Process) -> None:
        if not entry.caught_up.is_set():
            entry.caught_up.set()
            self._wake.set()
            log.info(
                "process follower caught up with the log",
                process=entry.name,
                position=entry.position,
            )

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

    async def listing(self, name: str, state: str | None = None) -> list[dict[str, Any]]:
        self.definition(name)
        return [
            {
                "id": row.instance,
                "state": row.state,
                "status": row.status,
                "version": row.version,
                "updated_at": rfc3339(row.updated_at),
            }
            for row in await self.index.listing(name, state)
        ]

    async def waiting(self, name: str, overdue_before: float, limit: int) -> list[ProcessState]:
        """Instances a person may have to look at (the operator inbox): those waiting for a
        decision, and those whose timer was due before `overdue_before`; `limit` of each."""
        self.definition(name)
        asked = await self.index.asking(name, limit)
        late = await self.index.due(name, overdue_before, limit)
        ids = dict.fromkeys([r.instance for r in asked] + [t.instance for t in late])
        states = [await self.instance(name, instance) for instance in ids]
        return [s for s in states if s.status == "running"]

    async def decide(
        self, name: str, instance: str, *, approve: bool, token: str, comment: str | None
    ) -> ProcessState:
        """A person's decision; NotAwaitingDecision (409) when the instance waits for none."""
        process = self.definition(name)
        entry = self.processes[name]
        async with entry.lock(instance):
            for _ in range(10):
                state = await self.instance(name, instance)
                try:
                    made = on_approval(
                        process, state, approve, token, comment, self.clock.now(), entry.position
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
        """Wait until the instance is in `state` with its commands delivered (tests; bound it
        with asyncio.timeout). Read from the stream on every change seen here, and now and
        then for the changes of other daemons."""
        process = self.definition(name)
        while True:
            self._changed.clear()
            known = fold(process, instance, await self.store.read(process.stream(instance)))
            if known.state == state and not known.undelivered:
                return known
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval):
                    await self._changed.wait()

    # -- following the log (the lease holder) -------------------------------------------------

    async def follow(self, entry: _Process, events: list[Envelope]) -> int:
        """Decide on the process's events, in order; repair the index of the decisions seen.
        Fewer than all handled when the lease is lost: the rest is the next holder's."""
        seen: dict[str, int] = {}  # instance -> highest decision version read
        handled = 0
        try:
            async with self._batch(entry):
                await self._decide_all(entry, events, seen)
                handled = len(events)
        except _LeaseLost as lost:
            handled = lost.handled
        finally:
            await self._repair(entry, seen)
        return handled

    async def _decide_all(
        self, entry: _Process, events: list[Envelope], seen: dict[str, int]
    ) -> None:
        """Each instance's events in log order; different instances' side by side (their
        appends and commands share the store's round trips), up to INSTANCES_AT_ONCE."""
        prefix = entry.process.stream_prefix
        lanes: dict[str, list[tuple[int, Envelope, bool]]] = {}
        for at, event in enumerate(events):
            subject = event.subject or ""
            decision = event.type.startswith(DECISION_PREFIX) and subject.startswith(prefix)
            instance: str | None = None
            if decision:
                instance = subject[len(prefix) :]
                seen[instance] = max(seen.get(instance, 0), event.streamversion or 0)
            elif event.type in entry.reads:
                instance = instance_of(entry.process, event)
            if instance is not None:
                lanes.setdefault(instance, []).append((at, event, decision))
        done = [True] * len(events)  # those of no instance: nothing to decide
        for steps in lanes.values():
            for at, _, _ in steps:
                done[at] = False
        room = asyncio.Semaphore(INSTANCES_AT_ONCE)

        async def lane(instance: str, steps: list[tuple[int, Envelope, bool]]) -> None:
            async with room:
                for at, event, decision in steps:
                    if not self._leading(entry):
                        return
                    if decision:
                        self._passed(entry, instance, event)
                    if event.type in entry.reads:
                        attributes = {"catgad.process": entry.name}
                        with tracing.event_span("process step", event, **attributes):
                            await self._decide_event(entry, instance, event)
                    done[at] = True

        await asyncio.gather(*(lane(i, steps) for i, steps in lanes.items()))
        if not all(done):  # the lease was lost: the events from the first one left are the
            raise _LeaseLost(done.index(False))  # next holder's

    def _passed(self, entry: _Process, instance: str, decision: Envelope) -> None:
        """Keep the cache up to the log: an event read after a decision (another daemon's, as
        an approval) is decided on the state after it, as the stream has it."""
        cached = entry.cache.get(instance)
        version = decision.streamversion or 0
        if cached is None or cached.version >= version:
            return
        if cached.version == version - 1:
            moved = _copy(cached)  # never changed in place: a decision may be reading it
            evolve(moved, decision)
            entry.keep(moved)
        else:
            del entry.cache[instance]  # read from the stream when next needed

    async def _repair(self, entry: _Process, seen: dict[str, int]) -> None:
        """Put the rows of instances whose decisions were read but not seen indexed here."""
        states = []
        for instance, version in seen.items():
            if entry.indexed.get(instance, 0) >= version:
                continue
            if instance in entry.locks:
                # decided on here right now (a timer firing, a person's decision): that path
                # puts its row when it ends; a row now would hold its half-done state
                continue
            state = await self._state(entry, instance, version)
            states.append(state)
        if states:
            self._changed.set()
            await self._index(entry, states, quietly=False)

    async def _state(self, entry: _Process, instance: str, at_least: int = 0) -> ProcessState:
        """The instance as last known here, or read from its stream (then kept)."""
        state = entry.cached(instance)
        if state is not None and state.version >= at_least:
            return state
        process = entry.process
        state = fold(process, instance, await self.store.read(process.stream(instance)))
        entry.keep(state)
        return state

    async def _decide_event(self, entry: _Process, instance: str, event: Envelope) -> None:
        process = entry.process
        async with entry.lock(instance):
            for attempt in range(10):
                state = entry.cached(instance)
                if state is None and attempt == 0 and event.type in process.start:
                    # most start events begin a new instance: tried without reading it, an
                    # existing one makes the append fail and is read then
                    state = ProcessState(process.name, instance, process.stream(instance))
                elif state is None:
                    state = await self._state(entry, instance)
                try:
                    if state.status is None:
                        if event.type not in process.start:
                            self._ignored.labels(process.name, event.type).inc()
                            return
                        made = begin(process, instance, event, self.clock.now())
                    else:
                        if (event.position or 0) <= state.upto:
                            return  # decided on already
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

    async def _reload(self, entry: _Process, instance: str) -> ProcessState:
        process = entry.process
        state = fold(process, instance, await self.store.read(process.stream(instance)))
        entry.cache.pop(instance, None)
        entry.keep(state)
        return state

    # -- acting ----------------------------------------------------------------------------------

    async def _leading_changed(self, entry: _Process, leading: bool) -> None:
        """Say when the lease is gained; the timers look again on a gain or a loss."""
        if leading:
            log.info("driving process instances", process=entry.process.name, owner=self.owner)
        self._wake.set()

    async def _commit(
        self, entry: _Process, state: ProcessState, made: list[Decide]
    ) -> ProcessState:
        """Append `made` at the version `state` was read at; then the state after them, in the
        cache and the index (the follower repairs the index if this write never happens)."""
        expected = state.version
        commit = f"{state.stream}@{expected}"
        now = self.clock.now()
        envelopes = [
            self.decision(state.stream, commit, index, decision, now, None)
            for index, decision in enumerate(made)
        ]
        result = await self.append_decisions(state.stream, envelopes, expected, commit)
        state = _copy(state)
        for stored in result.events:
            evolve(state, stored)
        entry.keep(state)
        entry.unindexed[state.id] = state
        entry.rows_added += 1
        if not entry.batching:
            await self._flush(entry)
        self._changed.set()
        if wake_at(state) is not None:
            self._wake.set()
        self._count(entry.process, made, now)
        return state

    @contextlib.asynccontextmanager
    async def _batch(self, entry: _Process) -> AsyncIterator[None]:
        """Rows of the decisions made inside are put together at the end, in one write."""
        entry.batching += 1
        try:
            yield
        finally:
            entry.batching -= 1
            await self._flush(entry)

    async def _flush(self, entry: _Process) -> None:
        """Put the rows decided so far. Callers meanwhile share one write: while one is under
        way the others wait for it, then the first of them to wake puts what came since."""
        wanted = entry.rows_added
        while entry.rows_put < wanted:
            if entry.flushing is None:
                states, entry.unindexed = list(entry.unindexed.values()), {}
                put = self._put_rows(entry, states, entry.rows_added)
                entry.flushing = asyncio.create_task(put)
            await asyncio.shield(entry.flushing)

    async def _put_rows(self, entry: _Process, states: list[ProcessState], upto: int) -> None:
        try:
            await self._index(entry, states, quietly=True)
        finally:
            entry.rows_put = max(entry.rows_put, upto)
            entry.flushing = None

    async def _index(self, entry: _Process, states: list[ProcessState], *, quietly: bool) -> None:
        try:
            await self.index.put(entry.name, [row_of(s) for s in states])
        except Exception as exc:
            if not quietly:
                raise
            # appended already: the follower puts the row when it reads the decision
            log.warning(
                "process index not written; the log follower repairs it",
                process=entry.name,
                error=getattr(exc, "detail", repr(exc)),
            )
            return
        for state in states:
            entry.indexed[state.id] = max(entry.indexed.get(state.id, 0), state.version)
            if wake_at(state) is not None:
                self._wake.set()

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
        heapq.heappush(entry.retries, (when, instance))
        entry.later[instance] = when
        self._wake.set()

    async def _timers(self) -> None:
        """Fire what falls due, for each process this daemon drives once its follower caught up:
        the index says what is due; the retries of failed deliveries and fires are kept here."""
        while not self._stopping:
            self._wake.clear()
            soonest: float | None = None
            for entry in self.processes.values():
                if not (self._leading(entry) and entry.caught_up.is_set()):
                    continue
                try:
                    when = await self._fire_due(entry)
                except Exception as exc:  # the store failed: look again shortly
                    log.warning(
                        "process timers not read",
                        process=entry.name,
                        error=getattr(exc, "detail", repr(exc)),
                    )
                    when = self.clock.now() + 1.0
                if when is not None and (soonest is None or when < soonest):
                    soonest = when
            # another daemon may schedule a timer (an approval taken there): our follower
            # reads it and wakes us; the poll bounds the wait in any case
            await self.clock.wait(self._wake, soonest)

    async def _fire_due(self, entry: _Process) -> float | None:
        """Fire every entry due now; when the next one falls due."""
        name = entry.name
        while not self._stopping and self._leading(entry):
            now = self.clock.now()
            timers = await self.index.due(name, now, DUE_BATCH)
            while entry.retries and entry.retries[0][0] <= now:
                instance = heapq.heappop(entry.retries)[1]
                entry.later.pop(instance, None)
                timers.append(DueTimer(instance, now))
            ready: dict[str, DueTimer] = {}
            for timer in timers:
                # one decided on here now (its row is written when that ends), or a delivery
                # being retried, is left for a later round
                busy = timer.instance in entry.locks
                if not busy and entry.later.get(timer.instance, 0.0) <= now:
                    ready.setdefault(timer.instance, timer)
            # fired side by side, a bounded number at once: their appends share the store's
            # round trips (one instance is still decided one at a time: its lock)
            batch = list(ready.values())
            for start in range(0, len(batch), TIMERS_AT_ONCE):
                group = batch[start : start + TIMERS_AT_ONCE]
                async with self._batch(entry):
                    await asyncio.gather(*(self._fire_or_retry(entry, t, now) for t in group))
            if len(timers) < DUE_BATCH or not ready:
                break
        now = self.clock.now()
        retry = entry.retries[0][0] if entry.retries else None
        soonest = min(
            (w for w in (await self.index.next_due(name), retry) if w is not None), default=None
        )
        if soonest is not None and soonest <= now:
            # due, yet not fired: held back for a retry (a delivery refused for now)
            soonest = (
                retry if retry is not None and retry > now else now + self.settings.poll_interval
            )
        return soonest

    async def _fire_or_retry(self, entry: _Process, timer: DueTimer, now: float) -> None:
        try:
            await self._fire(entry, timer)
        except Exception as exc:  # the store failed: try again shortly
            log.warning(
                "process timer not fired yet",
                process=entry.process.name,
                instance=timer.instance,
                error=getattr(exc, "detail", repr(exc)),
            )
            self._retry_at(entry, timer.instance, now + 1.0)

    async def _fire(self, entry: _Process, timer: DueTimer) -> None:
        instance = timer.instance
        async with entry.lock(instance):
            fresh = False  # read from the stream here: the cache may be behind another daemon
            fired = False
            for _ in range(10):
                state = await self._state(entry, instance)
                if state.status is None and fresh:
                    break
                if state.undelivered:  # a delivery to (re)try
                    await self._deliver(entry, state)
                    state = await self._state(entry, instance)
                made = on_time(entry.process, state, self.clock.now(), entry.position)
                if not made:
                    if fresh:
                        break
                    await self._reload(entry, instance)
                    fresh = True
                    continue
                try:
                    state = await self._commit(entry, state, made)
                except ConcurrencyError:
                    await self._reload(entry, instance)
                    fresh = True
                    continue
                fired = True  # its row goes with the commit's (batched)
                await self._deliver(entry, state)
                break
            else:
                return
            if not fired:  # met stale (the stream moved on): the index gets the stream's row
                await self._index(entry, [await self._state(entry, instance)], quietly=False)
        await self.index.drop(entry.name, timer)

    # -- metrics ---------------------------------------------------------------------------------

    async def _summaries(self) -> None:
        """Keep each process's summary (instances per state, approvals) read from the index."""
        while not self._stopping:
            for entry in self.processes.values():
                try:
                    entry.summary = await self.index.summary(entry.name)
                except Exception as exc:  # the store failed: the gauges keep the last values
                    log.warning(
                        "process summary not read",
                        process=entry.name,
                        error=getattr(exc, "detail", repr(exc)),
                    )
            await asyncio.sleep(SUMMARY_EVERY)

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
            "Instances per process and state (read from the store's process index).",
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
            asked = entry.summary.oldest_approval
            return max(0.0, self.clock.now() - asked) if asked is not None else 0.0

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
    return lambda: float(entry.summary.states.get(state, 0))


def _awaiting(entry: _Process) -> Callable[[], float]:
    return lambda: float(entry.summary.approvals)


def _copy(state: ProcessState) -> ProcessState:
    """A state to evolve apart from the one cached (evolve appends to its lists)."""
    return dataclasses.replace(
        state,
        sent=list(state.sent),
        undelivered=list(state.undelivered),
        history=list(state.history),
    )
