"""Process benchmark: transitions/s of 10,000 live instances, and their timers firing.

    python -m bench.processes                 # full run -> bench/RESULTS-processes.md
    python -m bench.processes --quick --output -   # smoke size, report to stdout

The process is the fulfilment example's (config/examples/fulfilment.yaml)
without its approval state: an OrderPlaced starts an instance in
`awaiting_payment` with a payment deadline (`after`); PaymentCaptured moves it
to `shipping`, which sends BookShipment, whose ShipmentBooked moves it to
`done`; a deadline that falls due moves it to `expired`, which sends
CancelOrder. Every command is a cheap rule command (one event). It runs on a
`Runtime` as `catgad run` builds it (the same engine, router, metrics, store
wiring and `ProcessRunner`, uvloop when installed); clients call
`Runtime.execute` as the HTTP layer would, `--concurrency` (64) at a time. The
runner's log follower is wrapped (`ProcessRunner.follow`) so the benchmark sees each
decision as the runner reads it back from the log: no store reads, no polling.

Workloads, each run on a fresh store:

- **transitions**: `--instances` (10,000) orders placed, each instance started
  by the runner (`process.Started` + `TimerScheduled`, deadline 1 h: no timer
  fires); then each driven: CapturePayment (the runner decides
  awaiting_payment -> shipping: TimerCancelled, Transitioned, CommandsSent;
  sends BookShipment; CommandsDelivered) and the ShipmentBooked it leads to
  (shipping -> done: Transitioned, Finished). Counted: the `process.Transitioned`
  decisions appended while driving, 2 per instance, taken from the runner's
  counter `catgad_process_transitions_total{by="event"}` on the runtime's
  registry, over the time from the first CapturePayment to the last instance's
  `Finished` read back by the follower; the real clock (SystemClock). Also:
  starts/s while placing, and per instance CapturePayment-to-Finished p50/p99.
- **burst**: `--instances` instances whose deadlines fall due at one moment. The
  runner's clock (`ProcessRunner.clock`, read by its timer task) is replaced by
  one that is the system clock except while held: held while the orders are
  placed (so every start, and every deadline, has the same time), then running on
  at the real rate from where it was held; the deadline (`after: 1s`) falls due
  1 s after that. Figures from the `process.TimerFired` decisions read back from
  the store: lateness = `at - due` (both the runner's clock, recorded in each
  decision), fired/s = timers over the time from due to the last one fired.
- **steady**: `--instances` instances placed beforehand, the held clock moved on
  `--step` (50 ms) after each `rate x step` of them, so their deadlines fall due
  `1/--rate` (1 ms) apart once the clock runs: timers falling due at 1,000/s
  while the runner does nothing else. The aim (the issue's): lateness p99 < 1 s.
- **resume**: a daemon starting on a store holding `--waiting` (100,000) instances
  whose deadlines are an hour off and `--due` (1,000) whose deadlines passed while it was
  down: its start-to-ready time, how long the due timers take to fire, one due query on
  the store's process index, and, for comparison, a read of the whole log (what the runner
  did before it was ready when it kept every instance in memory). Measured in the first
  repeat only; method in bench/processes_resume.py.
- **live** (not run by default; `--workloads ...,live`): orders placed at
  `--rate` per second on the real clock with a deadline of `--live-deadline`
  seconds: the runner starts instances and fires timers at the same time.

Every run is read back (SQLite: the file reopened, as a restart would): each
instance's stream must hold exactly its decisions (driven: Started,
TimerScheduled, TimerCancelled, Transitioned, CommandsSent, CommandsDelivered,
Transitioned, Finished; expired: Started, TimerScheduled, TimerFired,
Transitioned, CommandsSent, Finished, CommandsDelivered: one TimerFired, never
before it was due), each order's aggregates their events (BookShipment or
CancelOrder delivered once) and nothing else; the runner's counters must agree.
Else the benchmark stops with exit 1 and no figures. A warm-up of 20 instances
(placed and driven to `done`) runs in each runtime before the clock starts.
Workloads are interleaved within each repeat (order rotated), stores in turn.

After the measured runs, one more run per store (not timed): a burst with a
stopwatch on the timer task's path (`_fire`, `_decide_event`, `on_time`,
`_commit`, `_deliver`, the sender, the store's append, wrapped as instance
attributes), then another burst in the same runtime under cProfile (the event
loop's thread only), then as many instances driven to done by events under the
stopwatch. The report's findings are computed from these.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import os
import pstats
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, cast

from bench.processes_report import (
    BURST,
    LIVE,
    RESUME,
    STEADY,
    TRANSITIONS,
    TRANSITIONS_PER_INSTANCE,
    WORKLOADS,
    Profile,
    Results,
    TimersRun,
    TransitionsRun,
    markdown,
)
from bench.processes_resume import run_resume
from bench.reactors import run_suite
from bench.workload import VerificationError
from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.model import Config
from catgad.processes import runner as process_runner
from catgad.processes.runner import ProcessRunner
from catgad.processes.section import PROCESSES
from catgad.processes.state import (
    COMMANDS_SENT,
    DELIVERED,
    FINISHED,
    STARTED,
    TIMER_CANCELLED,
    TIMER_FIRED,
    TIMER_SCHEDULED,
    TRANSITIONED,
)
from catgad.runtime import Runtime
from catgad.store.factory import open_store
from catgad.store.protocol import EventStore

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "RESULTS-processes.md"
STORES = ("sqlite-normal", "sqlite-full", "memory")
DEFAULT_STORES = ("sqlite-normal", "memory")
DEFAULT_WORKLOADS = (TRANSITIONS, BURST, STEADY, RESUME)
PROCESS = "Fulfilment"
DONE = [
    STARTED,
    TIMER_SCHEDULED,
    TIMER_CANCELLED,
    TRANSITIONED,
    COMMANDS_SENT,
    DELIVERED,
    TRANSITIONED,
    FINISHED,
]
EXPIRED = [STARTED, TIMER_SCHEDULED, TIMER_FIRED, TRANSITIONED, COMMANDS_SENT, FINISHED, DELIVERED]
DONE_EVENTS = {
    "Order": ["OrderPlaced"],
    "Payment": ["PaymentCaptured"],
    "Shipment": ["ShipmentBooked"],
}
EXPIRED_EVENTS = {"Order": ["OrderPlaced", "OrderCancelled"]}
WARM_UP = 20  # instances placed and driven to done in each runtime before the clock starts
TIMEOUT = 900.0  # seconds a phase may take before the run is called stuck
BURST_DEADLINE = 1.0  # seconds from the clock running on to every deadline of a burst
HOUR = 3600.0

CONFIG = """
catgad: 1
service: {name: bench-processes}
store: STORE
processes:
  Fulfilment:
    description: Pay in time or the order is cancelled; paid orders are shipped.
    start: OrderPlaced
    id: data.order_id
    data: {total: data.total}
    initial: awaiting_payment
    states:
      awaiting_payment:
        on:
          - {event: PaymentCaptured, goto: shipping, set: {paid: data.amount}}
          - {event: OrderCancelled, goto: cancelled}
        after: {in: DEADLINE, goto: expired}
      shipping:
        send:
          - {command: BookShipment, data: {order_id: process.id, address: "'on file'"}}
        on: [{event: ShipmentBooked, goto: done}]
      expired:
        send: [{command: CancelOrder, data: {order_id: process.id, reason: "'not paid in time'"}}]
        final: true
      done: {final: true}
      cancelled: {final: true}
aggregates:
  Order:
    id: order_id
    initial: {status: none}
    on:
      OrderPlaced: {set: {status: "'placed'", total: data.total}}
      OrderCancelled: {set: {status: "'cancelled'"}}
  Payment:
    id: order_id
    initial: {status: none}
    on:
      PaymentCaptured: {set: {status: "'captured'", amount: data.amount}}
  Shipment:
    id: order_id
    initial: {status: none}
    on:
      ShipmentBooked: {set: {status: "'booked'", tracking: data.tracking}}
commands:
  PlaceOrder:
    aggregate: Order
    schema: &placed
      type: object
      required: [order_id, total]
      properties: {order_id: {type: string, minLength: 1}, total: {type: integer, minimum: 1}}
    require: [{rule: version == 0, message: order already placed}]
    emit: [{event: OrderPlaced, data: {order_id: data.order_id, total: data.total}}]
  CancelOrder:
    aggregate: Order
    schema: &cancelled
      type: object
      required: [order_id, reason]
      properties: {order_id: {type: string, minLength: 1}, reason: {type: string}}
    require: [{rule: state.status == 'placed', message: only a placed order can be cancelled}]
    emit: [{event: OrderCancelled, data: {order_id: data.order_id, reason: data.reason}}]
  CapturePayment:
    aggregate: Payment
    schema: &paid
      type: object
      required: [order_id, amount]
      properties: {order_id: {type: string, minLength: 1}, amount: {type: integer, minimum: 1}}
    require: [{rule: version == 0, message: paid already}]
    emit: [{event: PaymentCaptured, data: {order_id: data.order_id, amount: data.amount}}]
  BookShipment:
    aggregate: Shipment
    schema:
      type: object
      required: [order_id, address]
      properties: {order_id: {type: string, minLength: 1}, address: {type: string}}
    require: [{rule: version == 0, message: booked already}]
    emit:
      - {event: ShipmentBooked, data: {order_id: data.order_id, tracking: "'T-' + data.order_id"}}
events:
  OrderPlaced: {schema: *placed}
  OrderCancelled: {schema: *cancelled}
  PaymentCaptured: {schema: *paid}
  ShipmentBooked:
    schema:
      type: object
      required: [order_id, tracking]
      properties: {order_id: {type: string}, tracking: {type: string}}
"""


def store_yaml(store: str, path: Path) -> str:
    if store == "memory":
        return "memory"
    synchronous = store.removeprefix("sqlite-")
    return f"{{kind: sqlite, path: '{path}', synchronous: {synchronous}}}"


def bench_config(directory: Path, store: str, deadline: float) -> Config:
    """The benchmark's config on `store` with a payment deadline of `deadline` seconds."""
    directory.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(CONFIG).lstrip()
    text = text.replace("STORE", store_yaml(store, directory / "db"))
    text = text.replace("DEADLINE", f"{round(deadline * 1000)}ms")
    path = directory / "processes.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path, env={})
    if store != "memory":
        want = store.removeprefix("sqlite-")
        if config.store.kind != "sqlite" or config.store.synchronous != want:
            raise RuntimeError(f"{path}: store is {config.store.kind}, expected sqlite/{want}")
    after = PROCESSES.of(config)[PROCESS].states["awaiting_payment"].after
    if after is None or abs(after.seconds - round(deadline * 1000) / 1000) > 1e-9:
        raise RuntimeError(f"{path}: the payment deadline is not {deadline:g} s")
    return config


# -- the runner's clock and its log, as the benchmark sees them -----------------------------------


class BenchClock:
    """The system clock, except while held: `hold(at)` stops it at `at` (default: now),
    `resume()` runs it on at the real rate from where it was held. Its `wait` is the
    SystemClock's, woken too when the clock is held or resumed."""

    def __init__(self) -> None:
        self.offset = 0.0  # seconds added to time.time() while running
        self.held: float | None = None
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self.held if self.held is not None else time.time() + self.offset

    def hold(self, at: float | None = None) -> float:
        self.held = self.now() if at is None else at
        self._nudge()
        return self.held

    def resume(self) -> None:
        assert self.held is not None
        self.offset = self.held - time.time()
        self.held = None
        self._nudge()

    def _nudge(self) -> None:
        self._moved.set()
        self._moved = asyncio.Event()

    async def wait(self, wake: asyncio.Event, until: float | None) -> None:
        if until is not None and until <= self.now():
            return
        timeout = None if until is None or self.held is not None else until - self.now()
        waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self._moved.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


class Tracker:
    """The runner's log follower, wrapped: after each batch it handled, the process's
    decisions in it are counted (per type, per instance) and the waiters whose count is
    reached are woken, with the time (perf_counter) of that batch."""

    def __init__(self, runner: ProcessRunner) -> None:
        self.prefix = runner.processes[PROCESS].process.stream_prefix
        self.types: Counter[str] = Counter()
        self._goals: list[tuple[str, int, asyncio.Future[float]]] = []
        self._finished: dict[str, asyncio.Future[float]] = {}
        self._follow = runner.follow
        runner.follow = self.follow  # type: ignore[method-assign]  # an instance attribute

    def reach(self, kind: str, count: int) -> asyncio.Future[float]:
        """A future set once `count` decisions of `kind` have been read back in all."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self.types[kind] >= count:
            future.set_result(time.perf_counter())
        else:
            self._goals.append((kind, count, future))
        return future

    def finished(self, instance: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._finished[instance] = future
        return future

    async def follow(self, entry: Any, events: list[Envelope]) -> int:
        done = await self._follow(entry, events)
        now = time.perf_counter()
        for event in events[:done]:
            subject = event.subject or ""
            if not subject.startswith(self.prefix):
                continue
            self.types[event.type] += 1
            if event.type == FINISHED and self._finished:
                future = self._finished.pop(subject[len(self.prefix) :], None)
                if future is not None and not future.done():
                    future.set_result(now)
        if self._goals:
            waiting = []
            for kind, count, future in self._goals:
                if self.types[kind] >= count:
                    if not future.done():
                        future.set_result(now)
                else:
                    waiting.append((kind, count, future))
            self._goals = waiting
        return done


# -- driving --------------------------------------------------------------------------------------

Progress = Callable[[int], None]


def _quiet(_: int) -> None:
    return None


def reporter(label: str, what: str, total: int, every: float = 5.0) -> Progress:
    """A progress line on stderr every `every` seconds of a phase."""
    done = 0
    last = time.monotonic()

    def progress(n: int) -> None:
        nonlocal done, last
        done += n
        if time.monotonic() - last >= every and done < total:
            last = time.monotonic()
            print(f"  {label}: {done:,}/{total:,} {what}", file=sys.stderr)

    return progress


async def within(what: str, awaitable: Awaitable[float], seconds: float = TIMEOUT) -> float:
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise VerificationError(f"{what}: not done within {seconds:g} s") from None


async def workers(
    ids: Iterable[str], one: Callable[[str], Awaitable[None]], concurrency: int
) -> None:
    """`concurrency` workers run `one(id)` for each id, each waiting for its answer."""
    queue = iter(ids)

    async def worker() -> None:
        for instance in queue:
            await one(instance)

    try:
        async with asyncio.timeout(TIMEOUT), asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
    except* TimeoutError:
        raise VerificationError(f"clients not done within {TIMEOUT:g} s") from None


def total_of(order_id: str) -> int:
    return 100 + sum(order_id.encode()) % 900


async def place(rt: Runtime, ids: list[str], concurrency: int, progress: Progress = _quiet) -> None:
    async def one(order_id: str) -> None:
        await rt.execute("PlaceOrder", {"order_id": order_id, "total": total_of(order_id)})
        progress(1)

    await workers(ids, one, concurrency)


async def place_started(
    rt: Runtime, tracker: Tracker, ids: list[str], concurrency: int, progress: Progress = _quiet
) -> float:
    """Place the orders and wait until the runner has started every instance (its
    TimerScheduled read back); the perf_counter time of that."""
    goal = tracker.types[TIMER_SCHEDULED] + len(ids)
    await place(rt, ids, concurrency, progress)
    return await within("instances started", tracker.reach(TIMER_SCHEDULED, goal))


async def drive(
    rt: Runtime, tracker: Tracker, ids: list[str], concurrency: int, progress: Progress = _quiet
) -> list[float]:
    """CapturePayment for each instance; each client waits until its instance is done (the
    runner's Finished read back). The latency of each."""
    latencies: list[float] = []

    async def one(order_id: str) -> None:
        finished = tracker.finished(order_id)
        started = time.perf_counter()
        await rt.execute("CapturePayment", {"order_id": order_id, "amount": total_of(order_id)})
        latencies.append(await within(f"instance {order_id} done", finished) - started)
        progress(1)

    await workers(ids, one, concurrency)
    return latencies


async def warm_up(rt: Runtime, tracker: Tracker, ids: list[str], concurrency: int) -> None:
    await place_started(rt, tracker, ids, concurrency)
    await drive(rt, tracker, ids, concurrency)


def counter(rt: Runtime, name: str, **labels: str) -> float:
    return rt.metrics.registry.get_sample_value(name, {"process": PROCESS, **labels}) or 0.0


# -- reading back ---------------------------------------------------------------------------------


async def read_back(store: EventStore) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Every stream's event types, in order, and each instance's TimerFired data."""
    streams: dict[str, list[str]] = {}
    fired: dict[str, dict[str, Any]] = {}
    after = 0
    while page := await store.read_all(after=after, limit=5000):
        for event in page:
            subject = event.subject or ""
            streams.setdefault(subject, []).append(event.type)
            if event.type == TIMER_FIRED:
                fired.setdefault(subject, event.data)
        position = page[-1].position
        assert position is not None
        after = position
    return streams, fired


def expected_streams(done: list[str], expired: list[str]) -> dict[str, list[str]]:
    expected: dict[str, list[str]] = {}
    for ids, decisions, events in ((done, DONE, DONE_EVENTS), (expired, EXPIRED, EXPIRED_EVENTS)):
        for order_id in ids:
            expected[f"Process-{PROCESS}-{order_id}"] = list(decisions)
            for aggregate, types in events.items():
                expected[f"{aggregate}-{order_id}"] = list(types)
    return expected


def check(streams: dict[str, list[str]], done: list[str], expired: list[str]) -> int:
    """The number of events stored, if every instance and order holds exactly its events
    (driven to done, or expired once), and there is nothing else; else VerificationError."""
    expected = expected_streams(done, expired)
    if streams != expected:
        wrong = sorted(s for s in set(streams) | set(expected) if streams.get(s) != expected.get(s))
        raise VerificationError(
            f"{len(wrong)} stream(s) not as expected, e.g. {wrong[0]}: "
            f"{streams.get(wrong[0])} instead of {expected.get(wrong[0])}"
        )
    return sum(len(types) for types in streams.values())


def timer_times(
    fired: dict[str, dict[str, Any]], ids: list[str]
) -> tuple[list[float], list[float]]:
    """(due, at) of each instance's TimerFired; VerificationError if one fired early."""
    dues, ats = [], []
    for order_id in ids:
        data = fired[f"Process-{PROCESS}-{order_id}"]
        due, at = float(data["due"]), float(data["at"])
        if at < due:
            raise VerificationError(f"{order_id}: timer fired {due - at:.3f} s before it was due")
        dues.append(due)
        ats.append(at)
    return dues, ats


async def verified(
    config: Config, store: EventStore, done: list[str], expired: list[str]
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Read the run's store back: the memory store as it is, a SQLite file opened afresh
    (what a restart would see). Call it after the runtime has closed a SQLite store."""
    if config.store.kind == "memory":
        streams, fired = await read_back(store)
    else:
        reopened = open_store(config.store)
        await reopened.open()
        try:
            streams, fired = await read_back(reopened)
        finally:
            await reopened.close()
    return check(streams, done, expired), fired


# -- the runs -------------------------------------------------------------------------------------


def warm_ids(ids: list[str]) -> list[str]:
    return [f"{ids[0].rsplit('-', 1)[0]}-warm-{n}" for n in range(WARM_UP)]


async def run_transitions(
    store: str, ids: list[str], args: argparse.Namespace, workdir: Path, label: str
) -> TransitionsRun:
    """Place the instances, then drive each to done by events; the real clock."""
    config = bench_config(workdir, store, HOUR)
    warm, c = warm_ids(ids), args.concurrency
    async with Runtime.start(config, projections=True) as rt:  # the runner, as `catgad run`
        tracker = Tracker(cast(ProcessRunner, rt.reactor("processes")))
        await warm_up(rt, tracker, warm, c)
        before = counter(rt, "catgad_process_transitions_total", by="event")
        started = time.perf_counter()
        placing = reporter(f"{label} placing", "orders", len(ids))
        start_seconds = await place_started(rt, tracker, ids, c, placing) - started
        started = time.perf_counter()
        driving = reporter(f"{label} driving", "instances", len(ids))
        latencies = await drive(rt, tracker, ids, c, driving)
        ended = await within("instances done", tracker.reach(FINISHED, len(warm) + len(ids)))
        seconds = ended - started
        transitions = counter(rt, "catgad_process_transitions_total", by="event") - before
        if transitions != TRANSITIONS_PER_INSTANCE * len(ids):
            raise VerificationError(
                f"the runner counted {transitions:g} transitions, expected "
                f"{TRANSITIONS_PER_INSTANCE * len(ids)}"
            )
        if config.store.kind == "memory":
            stored, _ = await verified(config, rt.store, warm + ids, [])
    if config.store.kind != "memory":
        stored, _ = await verified(config, rt.store, warm + ids, [])
    return TransitionsRun(len(ids), start_seconds, seconds, latencies, int(transitions), stored)


async def place_steady(
    rt: Runtime,
    tracker: Tracker,
    clock: BenchClock,
    ids: list[str],
    args: argparse.Namespace,
    progress: Progress,
) -> None:
    """Place the instances `rate x step` at a time, the held clock moved on `step` before
    each group: their deadlines fall due `1/rate` apart on average once it runs."""
    base = clock.now()
    group = max(1, round(args.rate * args.step))
    for first in range(0, len(ids), group):
        clock.hold(base + first / args.rate)
        await place_started(rt, tracker, ids[first : first + group], args.concurrency, progress)


async def place_paced(
    rt: Runtime, ids: list[str], args: argparse.Namespace, progress: Progress
) -> None:
    """Place the orders at `rate` per second (each in its own task, at most 1,000 in flight:
    the pace drops if the engine cannot keep up)."""
    slots = asyncio.Semaphore(1000)
    start = time.perf_counter()

    async def one(order_id: str) -> None:
        try:
            await rt.execute("PlaceOrder", {"order_id": order_id, "total": total_of(order_id)})
            progress(1)
        finally:
            slots.release()

    async with asyncio.timeout(TIMEOUT), asyncio.TaskGroup() as group:
        for n, order_id in enumerate(ids):
            delay = start + n / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            group.create_task(one(order_id))


async def run_timers(
    store: str, workload: str, ids: list[str], args: argparse.Namespace, workdir: Path, label: str
) -> TimersRun:
    """Instances whose payment deadlines fall due at once (burst), at `rate` per second
    (steady), or placed at that rate on the real clock (live); each expires once."""
    n, c = len(ids), args.concurrency
    if workload == BURST:
        deadline = BURST_DEADLINE
    elif workload == STEADY:
        deadline = n / args.rate + BURST_DEADLINE
    else:
        deadline = args.live_deadline
    config = bench_config(workdir, store, deadline)
    warm = warm_ids(ids)
    async with Runtime.start(config, projections=True) as rt:
        clock = BenchClock()
        cast(
            ProcessRunner, rt.reactor("processes")
        ).clock = clock  # read by the timer task on its next turn; none is due yet
        tracker = Tracker(cast(ProcessRunner, rt.reactor("processes")))
        if workload != LIVE:
            clock.hold()  # no warm-up instance's deadline can pass before it is paid
        await warm_up(rt, tracker, warm, c)
        if clock.held is not None:  # past the warm-up's cancelled deadlines: none is left over
            clock.hold(clock.held + 2 * BURST_DEADLINE)
        before = counter(rt, "catgad_process_timers_fired_total")
        placing = reporter(f"{label} placing", "orders", n)
        started = time.perf_counter()
        if workload == BURST:
            await place_started(rt, tracker, ids, c, placing)
        elif workload == STEADY:
            await place_steady(rt, tracker, clock, ids, args, placing)
        else:
            await place_paced(rt, ids, args, placing)
        place_seconds = time.perf_counter() - started
        if clock.held is not None:
            clock.resume()
        print(f"  {label}: {n:,} placed in {place_seconds:.1f} s", file=sys.stderr)
        await within("timers fired", tracker.reach(DELIVERED, len(warm) + n))
        fired_count = counter(rt, "catgad_process_timers_fired_total") - before
        if fired_count != n:
            raise VerificationError(f"the runner counted {fired_count:g} timers fired, not {n}")
        if config.store.kind == "memory":
            stored, fired = await verified(config, rt.store, warm, ids)
    if config.store.kind != "memory":
        stored, fired = await verified(config, rt.store, warm, ids)
    dues, ats = timer_times(fired, ids)
    if workload == BURST and len(set(dues)) != 1:
        raise VerificationError(f"a burst's timers fell due at {len(set(dues))} moments, not 1")
    return TimersRun(n, dues, ats, stored, place_seconds)


# -- where a timer's time goes (untimed) ----------------------------------------------------------


WATCHED = ("_fire", "_decide_event", "_commit", "_deliver")


def stopwatch(rt: Runtime) -> tuple[dict[str, list[float]], Callable[[], None]]:
    """Time the timer path's steps (wall, awaits included) from now on: the runner's methods,
    its sender's `send`, the store's `append` (instance attributes over the methods) and
    `on_time` (the runner module's name for it). The totals, and a function ending it."""
    runner = cast(ProcessRunner, rt.reactor("processes"))
    wall: dict[str, list[float]] = {}
    undo: list[Callable[[], None]] = []

    def timed(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        total = wall.setdefault(name, [0, 0.0])

        async def clocked(*args: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kw)
            finally:
                total[0] += 1
                total[1] += time.perf_counter() - started

        return clocked

    for target, name in [*((runner, n) for n in WATCHED), (runner.sender, "send")]:
        setattr(target, name, timed(name, getattr(target, name)))
        undo.append(functools.partial(delattr, target, name))
    store = runner.store
    setattr(store, "append", timed("append", store.append))  # noqa: B010 (an instance attribute)
    undo.append(functools.partial(delattr, store, "append"))

    decide = getattr(process_runner, "on_time")  # noqa: B009 (the runner module's name for it)
    decided = wall.setdefault("on_time", [0, 0.0])

    def on_time(*args: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return decide(*args, **kw)
        finally:
            decided[0] += 1
            decided[1] += time.perf_counter() - started

    setattr(process_runner, "on_time", on_time)  # noqa: B010
    undo.append(functools.partial(setattr, process_runner, "on_time", decide))

    def end() -> None:
        for step in undo:
            step()

    return wall, end


async def burst_after_hold(
    rt: Runtime, tracker: Tracker, clock: BenchClock, ids: list[str], c: int
) -> float:
    """Place `ids` on the held clock, let it run; the perf_counter time they fell due."""
    clock.hold()
    await place_started(rt, tracker, ids, c)
    gc.collect()
    clock.resume()
    return time.perf_counter() + BURST_DEADLINE


async def profile(store: str, n: int, args: argparse.Namespace, workdir: Path) -> Profile:
    config = bench_config(workdir, store, BURST_DEADLINE)
    warm = warm_ids([f"prof-{store}-0"])
    c = args.concurrency
    async with Runtime.start(config, projections=True) as rt:
        clock = BenchClock()
        cast(ProcessRunner, rt.reactor("processes")).clock = clock
        tracker = Tracker(cast(ProcessRunner, rt.reactor("processes")))
        clock.hold()
        await warm_up(rt, tracker, warm, c)
        clock.hold(clock.now() + 2 * BURST_DEADLINE)  # past the warm-up's cancelled deadlines
        expected = len(warm) + n
        ids = [f"prof-a-{i}" for i in range(n)]
        await place_started(rt, tracker, ids, c)
        wall, end = stopwatch(rt)
        gc.collect()
        clock.resume()
        due = time.perf_counter() + BURST_DEADLINE
        await asyncio.sleep(BURST_DEADLINE - 0.05)  # the CPU is counted from about when due
        cpu, whole = time.thread_time(), time.process_time()
        done = await within("profiled timers", tracker.reach(DELIVERED, expected))
        cpu, whole = time.thread_time() - cpu, time.process_time() - whole
        end()
        seconds = done - due
        others = [f"prof-b-{i}" for i in range(n)]
        profiler = cProfile.Profile()
        due = await burst_after_hold(rt, tracker, clock, others, c)
        profiler.enable()
        done = await within("profiled timers", tracker.reach(DELIVERED, expected + n))
        profiler.disable()
        profiled = done - due
        # then instances driven to done by events, the clock held (no deadline can pass)
        clock.hold()
        driven = [f"prof-c-{i}" for i in range(n)]
        await place_started(rt, tracker, driven, c)
        drive_wall, end = stopwatch(rt)
        gc.collect()
        drive_cpu, started = time.thread_time(), time.perf_counter()
        await drive(rt, tracker, driven, c)
        drive_seconds = time.perf_counter() - started
        drive_cpu = time.thread_time() - drive_cpu
        end()
    return Profile(
        store,
        n,
        seconds,
        _totals(wall),
        cpu,
        whole,
        profiled,
        pstats.Stats(profiler),
        drive_seconds,
        _totals(drive_wall),
        drive_cpu,
    )


def _totals(wall: dict[str, list[float]]) -> dict[str, tuple[int, float]]:
    return {name: (int(calls), float(spent)) for name, (calls, spent) in wall.items() if calls}


# -- the whole benchmark --------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace, workdir: Path) -> Results:
    results = Results(stores=args.stores, workloads=args.workloads, load=[os.getloadavg()[0]])
    for repeat in range(args.repeat):
        prefix = f"r{repeat + 1}{uuid.uuid4().hex[:6]}"  # fresh ids every repeat
        for store in args.stores:
            turn = repeat % len(args.workloads)
            order = args.workloads[turn:] + args.workloads[:turn]  # interleaved, rotated
            for workload in order:
                label = f"[{store}] repeat {repeat + 1}/{args.repeat}: {workload}"
                tag = WORKLOADS.index(workload)
                ids = [f"{prefix}-{tag}-{n}" for n in range(args.instances)]
                where = workdir / f"rep{repeat + 1}" / store / workload
                gc.collect()
                if workload == RESUME:
                    if repeat:  # filling 100,000 instances is long: measured once
                        continue
                    config = bench_config(where, store, HOUR)
                    async with Runtime.start(config, projections=True) as rt:
                        resumed = await run_resume(rt, Tracker, PROCESS, args, prefix, EXPIRED)
                    print(
                        f"{label}: ready in {resumed.ready_seconds:.3f} s, {resumed.due:,} due "
                        f"fired after {resumed.fired_seconds:.2f} s, {resumed.waiting:,} waiting"
                        f" (the whole log read: {resumed.log_read_seconds:.2f} s)",
                        file=sys.stderr,
                    )
                    results.resume.setdefault(store, []).append(resumed)
                    continue
                if workload == TRANSITIONS:
                    run = await run_transitions(store, ids, args, where, label)
                    print(
                        f"{label}: {run.per_s:,.0f} transitions/s, {run.starts_per_s:,.0f} "
                        f"starts/s, p50 {run.ms(50):,.1f} ms, p99 {run.ms(99):,.1f} ms "
                        f"({run.stored:,} events verified)",
                        file=sys.stderr,
                    )
                    results.runs[store][workload].append(run)
                    continue
                timers = await run_timers(store, workload, ids, args, where, label)
                due = "all at once" if workload == BURST else f"{timers.due_per_s:,.0f}/s"
                print(
                    f"{label}: {timers.per_s:,.0f} timers fired/s, due {due}, "
                    f"lateness p50 {timers.late(50):.3f} s, p99 {timers.late(99):.3f} s "
                    f"({timers.stored:,} events verified)",
                    file=sys.stderr,
                )
                results.runs[store][workload].append(timers)
    if args.profile:
        n = min(args.instances, args.profile_instances)
        for store in args.stores:
            print(
                f"[{store}] profiling (not timed): {n:,} timers at once, twice; {n:,} instances "
                "driven",
                file=sys.stderr,
            )
            gc.collect()
            results.profiles.append(await profile(store, n, args, workdir / "profile" / store))
    results.load.append(os.getloadavg()[0])
    return results


def parse_list(value: str, known: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown) or '(none)'}; known: {', '.join(known)}"
        )
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.processes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--instances", type=int, default=None, help="instances per run (default 10000)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="clients in flight (64)")
    parser.add_argument(
        "--rate", type=int, default=1000, help="steady/live: timers due (orders) per second"
    )
    parser.add_argument(
        "--step", type=float, default=0.05, help="steady: seconds between groups of starts"
    )
    parser.add_argument(
        "--live-deadline", type=float, default=5.0, help="live: payment deadline, seconds (5)"
    )
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 2)")
    parser.add_argument(
        "--stores",
        default=",".join(DEFAULT_STORES),
        help=f"comma-separated subset of {','.join(STORES)} (default {','.join(DEFAULT_STORES)})",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(DEFAULT_WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)} "
        f"(default {','.join(DEFAULT_WORKLOADS)})",
    )
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the profiled runs"
    )
    parser.add_argument(
        "--profile-instances", type=int, default=2000, help="timers per profiled burst (2000)"
    )
    parser.add_argument(
        "--waiting", type=int, default=None, help="resume: instances waiting (default 100000)"
    )
    parser.add_argument(
        "--due", type=int, default=None, help="resume: instances due at the start (default 1000)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke size: 200 instances, 1 repeat")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="'-' for stdout")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stores in DIR")
    args = parser.parse_args(argv)
    try:
        args.stores = parse_list(args.stores, STORES, "store")
        args.workloads = parse_list(args.workloads, WORKLOADS, "workload")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))  # exits 2
    args.instances = args.instances or (200 if args.quick else 10_000)
    args.repeat = args.repeat or (1 if args.quick else 2)
    args.waiting = args.waiting or (2000 if args.quick else 100_000)
    args.due = args.due or (100 if args.quick else 1000)
    if min(args.instances, args.repeat, args.concurrency, args.rate, args.profile_instances) < 1:
        parser.error("--instances, --repeat, --concurrency, --rate, --profile-instances: >= 1")
    if args.step <= 0 or args.live_deadline <= 0:
        parser.error("--step and --live-deadline must be positive")
    return run_suite("processes", args, argv, benchmark, markdown)


if __name__ == "__main__":
    sys.exit(main())
