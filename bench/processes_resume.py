"""The process benchmark's `resume` workload: a daemon starting on a store that holds
`--waiting` (100,000) process instances whose deadlines are an hour off and `--due` (1,000)
whose deadlines have passed, as after a restart.

In a runtime (`Runtime.start`, as `catgad run`) whose own process runner is stopped, the
store is filled directly: each instance's decisions (`process.Started`, `TimerScheduled`,
as the runner would have appended them), its row in the store's process index, the orders
of the due ones (PlaceOrder), and the runner's checkpoint at the head of the log (the
runner that made them had read that far). Then, timed:

- the due query: one "due at or before now, up to 512" on the index, and `next_due`;
- the log read: `read_all` from position 0 to the head in batches of 500, what a runner that
  rebuilds its index of instances from the log reads at least before it is ready (the runner
  did so before the process index);
- ready: a new `ProcessRunner` on the store (the runtime's router sends its commands) from
  `start()` to its log follower caught up, when its timer task begins to fire;
- fire: from ready to the last due instance's `process.TimerFired` read back by the follower,
  and to its CancelOrder marked delivered.

Read back afterwards: each due instance's stream holds exactly Started, TimerScheduled,
TimerFired, Transitioned, CommandsSent, Finished, CommandsDelivered; the index counts
`--waiting` instances awaiting payment and `--due` expired; else no figures (exit 1).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.workload import VerificationError
from catgad.consumer.clock import rfc3339
from catgad.consumer.settings import LeasedSettings
from catgad.envelope import Envelope
from catgad.processes.runner import ProcessRunner, row_of
from catgad.processes.section import PROCESSES
from catgad.processes.state import DELIVERED, TIMER_FIRED, ProcessState, begin, evolve
from catgad.reactors.send import RouterSender
from catgad.runtime import Runtime
from catgad.store.process_index import process_index
from catgad.store.protocol import Coordination, EventStore

if TYPE_CHECKING:
    from bench.processes import Tracker

AT_ONCE = 256  # appends in flight while filling
ROWS_AT_ONCE = 1000  # index rows per put while filling


@dataclass(slots=True)
class ResumeRun:
    waiting: int
    due: int
    fill_seconds: float  # filling the store (not part of any figure)
    query_ms: float  # one due query (up to 512) on the index
    next_due_ms: float
    log_events: int  # events in the log
    log_read_seconds: float  # read_all from 0 to the head, batches of 500
    ready_seconds: float  # ProcessRunner.start() to its follower caught up
    fired_seconds: float  # ready to the last TimerFired read back
    delivered_seconds: float  # ready to the last CommandsDelivered read back


async def fill(rt: Runtime, process: str, waiting: int, due: int, prefix: str) -> float:
    """The store as a runner would have left it; seconds taken."""
    started = time.perf_counter()
    definition = PROCESSES.of(rt.config)[process]
    store, index = rt.store, process_index(rt.store)
    now = time.time()
    last = 0

    async def one(instance: str, at: float) -> ProcessState:
        nonlocal last
        event = Envelope(
            type="OrderPlaced",
            data={"order_id": instance, "total": 10},
            id=f"placed-{instance}",
            source="bench",
            subject=f"Order-{instance}",
        )
        state = ProcessState(process, instance, definition.stream(instance))
        envelopes = [
            Envelope(
                type=d.type,
                data={**d.data, "at": at},
                id=f"{state.stream}@0/{n}",
                source=rt.config.service.name,
                subject=state.stream,
                time=rfc3339(at),
                correlationid=state.stream,
            )
            for n, d in enumerate(begin(definition, instance, event, at))
        ]
        result = await store.append(
            state.stream, envelopes, expected_version=0, command_id=f"{state.stream}@0"
        )
        for stored in result.events:
            evolve(state, stored)
        last = max(last, result.events[-1].position or 0)
        return state

    deadline = definition.states[definition.initial].after
    assert deadline is not None
    ids = [(f"{prefix}-w{i}", now) for i in range(waiting)]
    ids += [(f"{prefix}-d{i}", now - deadline.seconds - 1.0) for i in range(due)]
    for start in range(0, len(ids), ROWS_AT_ONCE):
        group = ids[start : start + ROWS_AT_ONCE]
        states = []
        for sub in range(0, len(group), AT_ONCE):
            states += await asyncio.gather(*(one(i, at) for i, at in group[sub : sub + AT_ONCE]))
        await index.put(process, [row_of(s) for s in states])
    for instance, _ in ids[waiting:]:  # the orders the due instances will cancel
        await rt.execute("PlaceOrder", {"order_id": instance, "total": 10})
    assert isinstance(store, Coordination)
    head = last  # the orders placed after the decisions: the runner had read them too
    while events := await store.read_all(after=head, limit=1000):
        head = events[-1].position or head
    await store.save_checkpoint(f"process:{process}", head)
    return time.perf_counter() - started


async def read_log(store: EventStore) -> tuple[int, float]:
    started, position, count = time.perf_counter(), 0, 0
    while events := await store.read_all(after=position, limit=500):
        position, count = events[-1].position or position, count + len(events)
    return count, time.perf_counter() - started


async def run_resume(
    rt: Runtime, tracker_of: Any, process: str, args: Any, prefix: str, expired: list[str]
) -> ResumeRun:
    """Fill `rt`'s store, then time a new runner resuming on it (see the module docstring)."""
    waiting, due = args.waiting, args.due
    await rt.reactor(
        "processes"
    ).stop()  # the runtime's own runner: the store is as a stopped daemon's
    fill_seconds = await fill(rt, process, waiting, due, prefix)
    index = process_index(rt.store)
    now = time.time()
    started = time.perf_counter()
    found = await index.due(process, now, 512)
    query_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    await index.next_due(process)
    next_due_ms = (time.perf_counter() - started) * 1000
    if len(found) != min(due, 512):
        raise VerificationError(f"the due query found {len(found)} timers, not {min(due, 512)}")
    log_events, log_read_seconds = await read_log(rt.store)

    runner = ProcessRunner(
        rt.config,
        rt.store,
        RouterSender(rt.router, rt.config.service.name),
        owner=f"resume-{prefix}",
        settings=LeasedSettings(lease_ttl=10.0, poll_interval=0.05),
    )
    tracker: Tracker = tracker_of(runner)
    fired, delivered = tracker.reach(TIMER_FIRED, due), tracker.reach(DELIVERED, due)
    started = time.perf_counter()
    await runner.start()
    try:
        await asyncio.wait_for(runner.processes[process].caught_up.wait(), 600)
        ready = time.perf_counter()
        fired_at = await asyncio.wait_for(fired, 600)
        delivered_at = await asyncio.wait_for(delivered, 600)
    finally:
        await runner.stop()
    summary = await index.summary(process)
    if summary.states != {"awaiting_payment": waiting, "expired": due}:
        raise VerificationError(f"the index counts {summary.states} after the resume")
    for instance in [f"{prefix}-d{i}" for i in range(due)]:
        stored = [e.type for e in await rt.store.read(f"Process-{process}-{instance}")]
        if stored != expired:
            raise VerificationError(f"{instance} holds {stored}, not {expired}")
    return ResumeRun(
        waiting,
        due,
        fill_seconds,
        query_ms,
        next_due_ms,
        log_events,
        log_read_seconds,
        ready - started,
        fired_at - ready,
        delivered_at - ready,
    )


def resume_table(runs: dict[str, list[ResumeRun]]) -> list[str]:
    lines = [
        "| store | waiting | due | due query ms | next due ms | ready s | due fired after s "
        "| delivered after s | log events | whole log read s (the runner before) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for store, found in runs.items():
        for r in found:
            lines.append(
                f"| {store} | {r.waiting:,} | {r.due:,} | {r.query_ms:,.1f} "
                f"| {r.next_due_ms:,.2f} | {r.ready_seconds:,.3f} | {r.fired_seconds:,.2f} "
                f"| {r.delivered_seconds:,.2f} | {r.log_events:,} | {r.log_read_seconds:,.2f} |"
            )
    return lines
