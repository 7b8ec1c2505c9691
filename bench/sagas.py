"""Saga benchmark: a 3-step saga of local rule commands against a client sending the same commands.

    python -m bench.sagas --repeat 3          # full run -> bench/RESULTS-sagas.md
    python -m bench.sagas --quick --output -  # smoke size, report to stdout

The work: reserve the stock, charge the payment, book the shipment of one
order; three rule commands (`require: version == 0`, one event each) on three
aggregates. Two systems do it, in the same process, each on a `Runtime` as
`catgad run` builds it (the same engine, router, metrics and store wiring):

- **client**: `--concurrency` asyncio workers each take an order and call
  `CommandEngine.execute` three times, one after the other, waiting for each
  answer, as a client of the in-process engine would. The saga runner is not
  started (nothing follows the log).
- **saga**: the saga `Bench` (the same three commands as its steps, with
  compensations as `catgad validate` wants) is run by the daemon's own
  `SagaRunner` (started as in `catgad run`: follows the log, holds the lease,
  drives). `--concurrency` workers each call `SagaRunner.begin` and wait until
  the instance is completed, as the runner's index shows it once its log
  follower has passed the `saga.Completed` decision (the benchmark wraps the
  follower's sink: no store reads, no polling). Its latency runs from the call
  of `begin` to that moment. Per instance the runner appends 8 decisions
  (Started, StepSent + StepSucceeded per step, Completed) besides the 3
  commands' events.
- **saga, settled()** (with `--systems` or `--settled`): the same, each worker
  waiting with `SagaRunner.settled`, which re-reads its instance's stream each
  time any decision passes the follower; it shows what that wait costs.

On the memory store nothing waits, so a client's order runs start to end in one
go (its latency is the CPU time of 3 commands); a saga's instance still passes
through the runner's tasks and its log follower.

Figures: completed orders per second (sagas/s for the saga; for the client,
orders whose three commands were answered), commands/s (3 per order), and
nearest-rank p50/p99 of each order's start-to-completed latency. The aim (the
issue's): saga >= 0.5x client in the same run. Stores: SQLite (a fresh file
per run, `synchronous` normal and full, WAL, as the other suites) and memory.
Systems are interleaved within each repeat (order rotated), each run on a
fresh store with a fresh id prefix per repeat and a short warm-up, and every
run is read back: each order must hold exactly its 3 events and each saga its
8 decisions ending in `saga.Completed`, or the benchmark stops with no
figures. After the measured runs, one more saga run per store (not timed)
counts the store calls per order and, under cProfile, where the event loop's
CPU goes (the SQLite store's writer and reader threads are not profiled).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from bench.reactors import run_suite
from bench.sagas_report import (
    CLIENT,
    SAGA,
    SETTLED,
    SYSTEMS,
    Profile,
    Results,
    Run,
    markdown,
)
from bench.workload import VerificationError
from catgad import heap
from catgad.app.load import load_config
from catgad.envelope import Envelope
from catgad.model import Config
from catgad.runtime import Runtime
from catgad.sagas.runner import SagaRunner
from catgad.sagas.state import COMPLETED, STARTED, STEP_SENT, STEP_SUCCEEDED
from catgad.store.factory import open_store
from catgad.store.protocol import EventStore

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "RESULTS-sagas.md"
STORES = ("sqlite-normal", "sqlite-full", "memory")
SAGA_NAME = "Bench"
FINAL = ("completed", "compensated", "failed")
COMMANDS = ("ReserveStock", "ChargePayment", "BookShipment")
EVENTS = {
    "Reservation": "StockReserved",
    "Payment": "PaymentCaptured",
    "Shipment": "ShipmentBooked",
}
DECISIONS = [STARTED, *[STEP_SENT, STEP_SUCCEEDED] * len(COMMANDS), COMPLETED]
WARM_UP = 20  # orders run before the clock starts, in the same runtime
TIMEOUT = 600.0  # seconds a measured run may take before it is called stuck

CONFIG = """
catgad: 1
service: {name: bench-sagas}
store: STORE
sagas:
  Bench:
    start: {id: data.order_id}
    schema: &order
      type: object
      required: [order_id, qty, amount, address]
      properties:
        order_id: {type: string}
        qty: {type: integer}
        amount: {type: integer}
        address: {type: string}
    steps:
      - {name: reserve, command: ReserveStock, data: {order_id: input.order_id, qty: input.qty}}
      - name: pay
        command: ChargePayment
        data: {order_id: input.order_id, amount: input.amount}
      - name: ship
        command: BookShipment
        data: {order_id: input.order_id, address: input.address}
    compensate:
      StockReserved: {command: ReleaseStock, data: {order_id: event.data.order_id}}
      PaymentCaptured:
        command: RefundPayment
        data: {order_id: event.data.order_id, amount: event.data.amount}
aggregates:
  Reservation:
    id: order_id
    initial: {status: none}
    on:
      StockReserved: {set: {status: "'reserved'"}}
      StockReleased: {set: {status: "'released'"}}
  Payment:
    id: order_id
    initial: {status: none}
    on:
      PaymentCaptured: {set: {status: "'captured'"}}
      PaymentRefunded: {set: {status: "'refunded'"}}
  Shipment:
    id: order_id
    initial: {status: none}
    on:
      ShipmentBooked: {set: {status: "'booked'"}}
commands:
  ReserveStock:
    aggregate: Reservation
    schema:
      type: object
      required: [order_id, qty]
      properties: {order_id: {type: string}, qty: {type: integer}}
    require: [{rule: version == 0, message: reserved already}]
    emit: [{event: StockReserved, data: {order_id: data.order_id, qty: data.qty}}]
  ReleaseStock:
    aggregate: Reservation
    schema: &id_only {type: object, required: [order_id], properties: {order_id: {type: string}}}
    require: [{rule: state.status == 'reserved', message: nothing to release}]
    emit: [{event: StockReleased, data: {order_id: data.order_id}}]
  ChargePayment:
    aggregate: Payment
    schema: &money
      type: object
      required: [order_id, amount]
      properties: {order_id: {type: string}, amount: {type: integer}}
    require: [{rule: version == 0, message: charged already}]
    emit: [{event: PaymentCaptured, data: {order_id: data.order_id, amount: data.amount}}]
  RefundPayment:
    aggregate: Payment
    schema: *money
    require: [{rule: state.status == 'captured', message: nothing captured}]
    emit: [{event: PaymentRefunded, data: {order_id: data.order_id, amount: data.amount}}]
  BookShipment:
    aggregate: Shipment
    schema:
      type: object
      required: [order_id, address]
      properties: {order_id: {type: string}, address: {type: string}}
    require: [{rule: version == 0, message: booked already}]
    emit: [{event: ShipmentBooked, data: {order_id: data.order_id, address: data.address}}]
events:
  StockReserved:
    schema:
      type: object
      required: [order_id, qty]
      properties: {order_id: {type: string}, qty: {type: integer}}
  StockReleased: {schema: *id_only}
  PaymentCaptured: {schema: *money}
  PaymentRefunded: {schema: *money}
  ShipmentBooked:
    schema:
      type: object
      required: [order_id, address]
      properties: {order_id: {type: string}, address: {type: string}}
"""


def store_yaml(store: str, path: Path) -> str:
    if store == "memory":
        return "memory"
    synchronous = store.removeprefix("sqlite-")
    return f"{{kind: sqlite, path: '{path}', synchronous: {synchronous}}}"


def bench_config(directory: Path, store: str) -> Config:
    """The benchmark's config on `store`, its SQLite file (if any) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(CONFIG).lstrip().replace("STORE", store_yaml(store, directory / "db"))
    path = directory / "sagas.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path, env={})
    if store != "memory":
        want = store.removeprefix("sqlite-")
        if config.store.kind != "sqlite" or config.store.synchronous != want:
            raise RuntimeError(f"{path}: store is {config.store.kind}, expected sqlite/{want}")
    return config


def order(order_id: str, n: int) -> dict[str, Any]:
    return {"order_id": order_id, "qty": 1 + n % 5, "amount": 100 + n % 900, "address": f"{n} St"}


def commands_of(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The three commands the client sends, with the data the saga's steps give them."""
    oid = data["order_id"]
    return [
        ("ReserveStock", {"order_id": oid, "qty": data["qty"]}),
        ("ChargePayment", {"order_id": oid, "amount": data["amount"]}),
        ("BookShipment", {"order_id": oid, "address": data["address"]}),
    ]


# -- measuring ------------------------------------------------------------------------------------


Progress = Callable[[int], None]


async def timed(
    ids: list[str], one: Callable[[str, int], Awaitable[float]], concurrency: int,
    progress: Progress,
) -> tuple[float, float, list[float]]:  # fmt: skip
    """`concurrency` workers run `one(id, n)` for each id; (wall seconds, the process's CPU
    seconds over every thread, each one's latency)."""
    queue = iter(enumerate(ids))
    latencies: list[float] = []

    async def worker() -> None:
        for n, order_id in queue:
            latencies.append(await one(order_id, n))
            progress(1)

    started, cpu = time.perf_counter(), time.process_time()
    try:
        async with asyncio.timeout(TIMEOUT), asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(ids))):
                group.create_task(worker())
    except* VerificationError as failed:  # a saga that did not complete: the first says why
        raise failed.exceptions[0] from None
    except* TimeoutError:
        raise VerificationError(
            f"{len(latencies)} of {len(ids)} orders completed within {TIMEOUT:g} s"
        ) from None
    return time.perf_counter() - started, time.process_time() - cpu, latencies


class Completions:
    """The saga runner's log follower, wrapped: after each batch, the instances its index
    shows finished resolve their waiters (the time, and the status)."""

    def __init__(self, runner: SagaRunner) -> None:
        self.runner = runner
        self.entry = runner.sagas[SAGA_NAME]
        self.prefix = self.entry.saga.stream_prefix
        self.waiting: dict[str, asyncio.Future[tuple[float, str]]] = {}
        self._handle = runner.handle
        runner.loop.sink = self

    def expect(self, instance: str) -> asyncio.Future[tuple[float, str]]:
        future: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        self.waiting[instance] = future
        return future

    async def handle(self, events: list[Envelope]) -> int:
        done = await self._handle(events)
        if self.waiting:
            now = time.perf_counter()
            for event in events[:done]:
                subject = event.subject or ""
                if not subject.startswith(self.prefix):
                    continue
                instance = subject[len(self.prefix) :]
                state = self.entry.index.get(instance)
                if state is None or state.status not in FINAL:
                    continue
                future = self.waiting.pop(instance, None)
                if future is not None and not future.done():
                    future.set_result((now, str(state.status)))
        return done


async def client_orders(
    rt: Runtime, ids: list[str], concurrency: int, progress: Progress
) -> tuple[float, float, list[float]]:
    engine = rt.engine

    async def one(order_id: str, n: int) -> float:
        started = time.perf_counter()
        for command, data in commands_of(order(order_id, n)):
            await engine.execute(command, data)
        return time.perf_counter() - started

    return await timed(ids, one, concurrency, progress)


async def saga_orders(
    rt: Runtime, ids: list[str], concurrency: int, progress: Progress, *, settled: bool
) -> tuple[float, float, list[float]]:
    runner = cast(SagaRunner, rt.reactor("sagas"))
    completions = runner.loop.sink
    assert isinstance(completions, Completions)

    async def one(order_id: str, n: int) -> float:
        started = time.perf_counter()
        if settled:
            await runner.begin(SAGA_NAME, order(order_id, n))
            state = await runner.settled(SAGA_NAME, order_id)
            ended, status = time.perf_counter(), str(state.status)
        else:
            future = completions.expect(order_id)
            await runner.begin(SAGA_NAME, order(order_id, n))
            ended, status = await future
        if status != "completed":
            raise VerificationError(f"saga {order_id} ended {status}, not completed")
        return ended - started

    return await timed(ids, one, concurrency, progress)


async def read_back(store: EventStore) -> dict[str, list[str]]:
    """Every stream's event types, in order, read page by page."""
    streams: dict[str, list[str]] = {}
    after = 0
    while page := await store.read_all(after=after, limit=2000):
        for event in page:
            streams.setdefault(event.subject or "", []).append(event.type)
        position = page[-1].position
        assert position is not None
        after = position
    return streams


def check(streams: dict[str, list[str]], ids: list[str], saga: bool) -> int:
    """The number of events stored, if each order holds exactly its events (and each saga
    its decisions); else VerificationError."""
    expected: dict[str, list[str]] = {}
    for order_id in ids:
        for aggregate, event in EVENTS.items():
            expected[f"{aggregate}-{order_id}"] = [event]
        if saga:
            expected[f"Saga-{SAGA_NAME}-{order_id}"] = list(DECISIONS)
    if streams != expected:
        wrong = sorted(s for s in set(streams) | set(expected) if streams.get(s) != expected.get(s))
        raise VerificationError(
            f"{len(wrong)} stream(s) not as expected, e.g. {wrong[0]}: "
            f"{streams.get(wrong[0])} instead of {expected.get(wrong[0])}"
        )
    return sum(len(types) for types in streams.values())


async def measure(
    store: str, system: str, ids: list[str], concurrency: int, workdir: Path, progress: Progress
) -> Run:
    """One run of one system on a fresh store: warm-up, the timed orders, the read-back."""
    config = bench_config(workdir, store)
    warm = [f"{ids[0].rsplit('-', 1)[0]}-warm-{n}" for n in range(WARM_UP)]
    saga = system != CLIENT
    async with Runtime.start(config, projections=saga) as rt:
        heap.settle()  # as `catgad run` does once started
        if saga:
            Completions(cast(SagaRunner, rt.reactor("sagas")))
            await saga_orders(rt, warm, concurrency, _quiet, settled=False)
            seconds, cpu, latencies = await saga_orders(
                rt, ids, concurrency, progress, settled=system == SETTLED
            )
        else:
            await client_orders(rt, warm, concurrency, _quiet)
            seconds, cpu, latencies = await client_orders(rt, ids, concurrency, progress)
        if store == "memory":
            stored = check(await read_back(rt.store), warm + ids, saga)
    if store != "memory":  # what a restart sees: the file opened afresh
        reopened = open_store(config.store)
        await reopened.open()
        try:
            stored = check(await read_back(reopened), warm + ids, saga)
        finally:
            await reopened.close()
    return Run(len(ids), seconds, cpu, latencies, stored)


# -- where the saga's time goes (untimed) ---------------------------------------------------------


def count_calls(store: EventStore) -> dict[str, int]:
    """Count the store's reads and appends from now on (instance attributes over its methods;
    `del store.<name>` ends it)."""
    counts = dict.fromkeys(("append", "read", "read_all"), 0)
    for name in counts:
        method = getattr(store, name)

        def counted(*args: Any, _method: Any = method, _name: str = name, **kw: Any) -> Any:
            counts[_name] += 1
            return _method(*args, **kw)

        setattr(store, name, counted)
    return counts


def uncount(store: EventStore, counts: dict[str, int]) -> None:
    for name in counts:
        delattr(store, name)


async def profile(store: str, ids: list[str], concurrency: int, workdir: Path) -> Profile:
    """Untimed: the store calls of a client run and of a saga run, then another saga run
    (on fresh ids, counting nothing) under cProfile."""
    warm = [f"{order_id}-warm" for order_id in ids[:WARM_UP]]
    async with Runtime.start(bench_config(workdir / "client", store)) as rt:
        await client_orders(rt, warm, concurrency, _quiet)
        client = count_calls(rt.store)
        await client_orders(rt, ids, concurrency, _quiet)
    profiler = cProfile.Profile()
    async with Runtime.start(bench_config(workdir / "saga", store), projections=True) as rt:
        heap.settle()
        Completions(cast(SagaRunner, rt.reactor("sagas")))
        await saga_orders(rt, warm, concurrency, _quiet, settled=False)
        saga = count_calls(rt.store)
        await saga_orders(rt, ids, concurrency, _quiet, settled=False)
        uncount(rt.store, saga)
        profiled = [f"{order_id}-profiled" for order_id in ids]
        profiler.enable()
        started = time.perf_counter()
        await saga_orders(rt, profiled, concurrency, _quiet, settled=False)
        seconds = time.perf_counter() - started
        profiler.disable()
    return Profile(store, len(ids), seconds, client, saga, pstats.Stats(profiler))


# -- the whole benchmark --------------------------------------------------------------------------


def _quiet(_: int) -> None:
    return None


def reporter(label: str, total: int, every: float = 5.0) -> Progress:
    """A progress line on stderr every `every` seconds of a run (a run's end has its own)."""
    done = 0
    last = time.monotonic()

    def progress(n: int) -> None:
        nonlocal done, last
        done += n
        if time.monotonic() - last >= every and done < total:
            last = time.monotonic()
            print(f"  {label}: {done:,}/{total:,} orders", file=sys.stderr)

    return progress


async def benchmark(args: argparse.Namespace, workdir: Path) -> Results:
    results = Results(stores=args.stores, systems=args.systems, load=[os.getloadavg()[0]])
    for repeat in range(args.repeat):
        prefix = f"r{repeat + 1}{uuid.uuid4().hex[:6]}"  # fresh ids every repeat
        for store in args.stores:
            turn = repeat % len(args.systems)
            order_ = args.systems[turn:] + args.systems[:turn]  # interleaved, rotated
            for system in order_:
                label = f"[{store}] repeat {repeat + 1}/{args.repeat}: {system}"
                tag = SYSTEMS.index(system)
                ids = [f"{prefix}-{tag}-{n}" for n in range(args.orders)]
                where = workdir / f"rep{repeat + 1}" / store / f"s{tag}"
                gc.collect()
                run = await measure(
                    store, system, ids, args.concurrency, where, reporter(label, args.orders)
                )
                results.runs[store][system].append(run)
                print(
                    f"{label}: {run.per_s:,.0f} orders/s, p50 {run.pct(50):.1f} ms, "
                    f"p99 {run.pct(99):.1f} ms ({run.stored:,} events verified)",
                    file=sys.stderr,
                )
    if args.profile:
        for store in args.stores:
            print(f"[{store}] profiling a saga run (not timed)", file=sys.stderr)
            ids = [f"prof-{n}" for n in range(args.orders)]
            results.profiles.append(
                await profile(store, ids, args.concurrency, workdir / "profile" / store)
            )
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
        prog="python -m bench.sagas",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=int, default=None, help="orders per run (default 1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="orders in flight (64)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 3)")
    parser.add_argument(
        "--stores", default=",".join(STORES), help=f"comma-separated subset of {','.join(STORES)}"
    )
    parser.add_argument(
        "--systems",
        default=f"{CLIENT},{SAGA}",
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: {CLIENT},{SAGA})",
    )
    parser.add_argument("--settled", action="store_true", help=f"also measure {SETTLED!r}")
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the profiled saga run"
    )
    parser.add_argument("--quick", action="store_true", help="smoke size: 40 orders, 1 repeat")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="'-' for stdout")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stores in DIR")
    args = parser.parse_args(argv)
    try:
        args.stores = parse_list(args.stores, STORES, "store")
        args.systems = parse_list(args.systems, SYSTEMS, "system")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))  # exits 2
    if args.settled and SETTLED not in args.systems:
        args.systems.append(SETTLED)
    args.orders = args.orders or (40 if args.quick else 1000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.orders < 1 or args.repeat < 1 or args.concurrency < 1:
        parser.error("--orders, --repeat and --concurrency must be positive")
    return run_suite("sagas", args, argv, benchmark, markdown)


if __name__ == "__main__":
    sys.exit(main())
