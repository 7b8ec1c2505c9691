"""The process benchmark's figures: medians over repeats, the aim, the profile, the results file.

Measured by bench/processes.py (the method is in its docstring).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import pstats
import sqlite3
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.processes_resume import ResumeRun, resume_table
from bench.report import checkout, cpu_model, package_version
from catgad.processes.runner import INSTANCES_AT_ONCE, TIMERS_AT_ONCE

TRANSITIONS, BURST, STEADY, LIVE = "transitions", "burst", "steady", "live"
RESUME = "resume"  # bench/processes_resume.py
WORKLOADS = (TRANSITIONS, BURST, STEADY, LIVE, RESUME)
TIMER_WORKLOADS = (BURST, STEADY, LIVE)
AIM = 1.0  # seconds: timer lateness p99 at ~1,000 timers falling due per second
TRANSITIONS_PER_INSTANCE = 2  # awaiting_payment -> shipping -> done, both by an event


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (the values need not be sorted)."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass(slots=True)
class TransitionsRun:
    """10,000 live instances driven by events, on one store in one repeat."""

    instances: int
    start_seconds: float  # first PlaceOrder to the last instance's start read back
    seconds: float  # first CapturePayment to the last instance's Finished read back
    latencies: list[float] = field(repr=False)  # per instance: CapturePayment to Finished
    transitions: int  # process.Transitioned decisions appended while driving (runner's counter)
    stored: int  # events read back and checked after the run

    @property
    def starts_per_s(self) -> float:
        return self.instances / self.start_seconds

    @property
    def per_s(self) -> float:
        return self.transitions / self.seconds

    def ms(self, p: float) -> float:
        return pct(self.latencies, p) * 1000


@dataclass(slots=True)
class TimersRun:
    """Timers of many instances firing, on one store in one repeat; times from the
    `process.TimerFired` decisions read back (the runner's clock, seconds)."""

    instances: int
    dues: list[float] = field(repr=False)  # `due` of each TimerFired
    fired: list[float] = field(repr=False)  # `at` of each TimerFired (its append)
    stored: int
    place_seconds: float  # placing the instances (before any timer was due)

    @property
    def lateness(self) -> list[float]:
        return [at - due for at, due in zip(self.fired, self.dues, strict=True)]

    def late(self, p: float) -> float:
        return pct(self.lateness, p)

    @property
    def due_span(self) -> float:
        return max(self.dues) - min(self.dues)

    @property
    def due_per_s(self) -> float:
        """Timers falling due per second (the rate the schedule asked of the runner): those
        due before the last due moment, over the time from the first to it."""
        last = max(self.dues)
        before = sum(1 for due in self.dues if due < last)
        return before / self.due_span if self.due_span > 0 else math.inf

    @property
    def drain(self) -> float:
        """Seconds from the first timer falling due to the last one fired."""
        return max(self.fired) - min(self.dues)

    @property
    def per_s(self) -> float:
        """Timers fired per second over that time."""
        return self.instances / self.drain


@dataclass(slots=True)
class Profile:
    """An untimed burst under a stopwatch on the runner's timer path, then one under cProfile,
    then instances driven by events under the stopwatch."""

    store: str
    instances: int
    seconds: float  # the stopwatch burst: first due to the last delivered
    wall: dict[str, tuple[int, float]]  # what -> (calls, seconds), the stopwatch burst
    loop_cpu: float  # CPU seconds of the event loop's thread during the stopwatch burst
    process_cpu: float  # CPU seconds of the whole process (SQLite's threads too)
    profiled_seconds: float
    stats: pstats.Stats = field(repr=False)
    # then as many instances driven to done by events, under the stopwatch
    drive_seconds: float = 0.0  # first CapturePayment to the last Finished read back
    drive_wall: dict[str, tuple[int, float]] = field(default_factory=dict)
    drive_cpu: float = 0.0  # CPU seconds of the event loop's thread while driving


Run = TransitionsRun | TimersRun


@dataclass(slots=True)
class Results:
    stores: list[str]
    workloads: list[str]
    runs: dict[str, dict[str, list[Run]]] = field(default_factory=dict)  # store -> workload
    profiles: list[Profile] = field(default_factory=list)
    resume: dict[str, list[ResumeRun]] = field(default_factory=dict)  # store -> runs
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end
    checkout: str = field(default_factory=checkout)  # the tree measured, taken at the start

    def __post_init__(self) -> None:
        for store in self.stores:
            self.runs.setdefault(store, {w: [] for w in self.workloads})

    def transitions(self, store: str) -> list[TransitionsRun]:
        return [r for r in self.runs[store].get(TRANSITIONS, []) if isinstance(r, TransitionsRun)]

    def timers(self, store: str, workload: str) -> list[TimersRun]:
        return [r for r in self.runs[store].get(workload, []) if isinstance(r, TimersRun)]


def _cell(values: list[float], digits: int = 0) -> str:
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:,.{digits}f}"
    return f"{mid:,.{digits}f} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def _med(values: list[float]) -> float:
    return float(statistics.median(values))


def _verified(runs: list[TransitionsRun] | list[TimersRun]) -> str:
    return ", ".join(f"{n:,}" for n in sorted({r.stored for r in runs}))


def transitions_table(results: Results) -> list[str]:
    lines = [
        "| store | instances | starts/s | transitions/s median [min-max] | p50 ms | p99 ms "
        "| events verified |",
        "|---|---|---|---|---|---|---|",
    ]
    for store in results.stores:
        runs = results.transitions(store)
        if not runs:
            continue
        lines.append(
            f"| {store} | {runs[0].instances:,} | {_cell([r.starts_per_s for r in runs])} "
            f"| {_cell([r.per_s for r in runs])} "
            f"| {_med([r.ms(50) for r in runs]):,.1f} | {_med([r.ms(99) for r in runs]):,.1f} "
            f"| {_verified(runs)} |"
        )
    return lines


def timers_table(results: Results, workload: str) -> list[str]:
    aim = workload != BURST
    head = "| store | timers | due/s | fired/s median [min-max] | all fired after s "
    head += "| lateness p50 s | p99 s | max s | events verified |"
    rule = "|---|---|---|---|---|---|---|---|---|"
    if aim:
        head += f" aim p99 < {AIM:g} s |"
        rule += "---|"
    lines = [head, rule]
    for store in results.stores:
        runs = results.timers(store, workload)
        if not runs:
            continue
        due = "all at once" if workload == BURST else _cell([r.due_per_s for r in runs])
        p99 = _med([r.late(99) for r in runs])
        line = (
            f"| {store} | {runs[0].instances:,} | {due} | {_cell([r.per_s for r in runs])} "
            f"| {_med([r.drain for r in runs]):,.2f} | {_med([r.late(50) for r in runs]):.3f} "
            f"| {p99:.3f} | {_med([r.late(100) for r in runs]):.3f} | {_verified(runs)} |"
        )
        if aim:
            line += f" {'met' if p99 < AIM else 'missed'} |"
        lines.append(line)
    return lines


def _where(key: tuple[str, int, str]) -> str:
    path, line, name = key
    if path == "~":
        return name
    parts = path.replace("\\", "/").split("/")
    if "catgad" in parts:
        path = "/".join(parts[len(parts) - parts[::-1].index("catgad") - 1 :])
    else:
        path = parts[-1]
    return f"{path}:{line} {name}"


WALL_LABELS = {
    "_fire": "`ProcessRunner._fire` (one per timer, up to TIMERS_AT_ONCE side by side)",
    "_decide_event": "`ProcessRunner._decide_event` (the log follower on the OrderCancelled "
    "each timer leads to, ignored; beside the timer task, not in `_fire`)",
    "on_time": "`state.on_time` (the decisions: a deep copy and a fold)",
    "_commit": "`ProcessRunner._commit` (decisions appended; 2 per timer: fired, delivered)",
    "_deliver": "`ProcessRunner._deliver` (send the commands, then commit `CommandsDelivered`)",
    "send": "`RouterSender.send` of `CancelOrder` (router, engine, its append)",
    "append": "`store.append` (every append of the process: decisions and commands)",
}


def _deepcopy(profile: Profile) -> tuple[float, list[tuple[str, float]]]:
    """copy.deepcopy's cumulative share of the profiled event-loop CPU, and its callers'
    shares outside the copy module (each with the time spent in the copies it asked for)."""
    stats = profile.stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values()) or 1.0
    for key, row in stats.items():
        if key[2] == "deepcopy" and key[0].replace("\\", "/").endswith("/copy.py"):
            callers = [
                (_where(caller), timing[3] / total)
                for caller, timing in row[4].items()
                if not caller[0].replace("\\", "/").endswith("/copy.py")
            ]
            callers.sort(key=lambda c: c[1], reverse=True)
            return row[3] / total, callers
    return 0.0, []


def _per_timer(profile: Profile, name: str) -> float:
    """Milliseconds of wall time per timer in `name` (the stopwatch run)."""
    return profile.wall.get(name, (0, 0.0))[1] / profile.instances * 1000


def findings(results: Results) -> list[str]:
    """What the figures and the profile say, computed from them."""
    lines: list[str] = []
    for profile in results.profiles:
        store = profile.store
        steady = results.timers(store, STEADY)
        fire = _per_timer(profile, "_fire")
        busy = profile.wall.get("_fire", (0, 0.0))[1] / profile.seconds
        append = _per_timer(profile, "append")
        appends = profile.wall.get("append", (0, 0.0))[0] / profile.instances
        head = f"- **{store}**: "
        if steady:
            p99 = _med([r.late(99) for r in steady])
            verdict = "met" if p99 < AIM else "missed"
            head += f"steady lateness p99 {p99:.3f} s, the aim {verdict}. "
        rate = profile.instances / profile.seconds if profile.seconds else math.inf
        lines.append(
            head + f"The timer task fires up to {TIMERS_AT_ONCE} timers side by side: in the "
            f"stopwatch burst {profile.instances:,} fired in {profile.seconds:.2f} s "
            f"({rate:,.0f}/s), {busy:.0f} in flight on average. Each took {fire:.3f} ms in "
            f"`_fire`, of which {append:.3f} ms ({append / (fire or 1):.0%}) waiting on the "
            f"store's `append` ({appends:.1f} per timer, one after another) and "
            f"{_per_timer(profile, 'on_time'):.3f} ms `on_time`; the event loop's thread was "
            f"busy {profile.loop_cpu / profile.seconds:.0%} of the wall time."
        )
        share, callers = _deepcopy(profile)
        if share:
            by = ", ".join(f"`{where}` {part:.0%}" for where, part in callers[:3] if part >= 0.01)
            lines.append(
                f"  `copy.deepcopy` took {share:.0%} of the event loop's CPU under cProfile "
                f"(which inflates many small calls)" + (f", asked for by {by}." if by else ".")
            )
        decide = profile.drive_wall.get("_decide_event")
        if decide and profile.drive_seconds:
            per = decide[1] / profile.instances * 1000
            events = decide[0] / profile.instances
            done = TRANSITIONS_PER_INSTANCE * profile.instances / profile.drive_seconds
            lines.append(
                f"  Transitions: the log follower decides on up to {INSTANCES_AT_ONCE} "
                f"instances side by side, each instance's events in log order: in the "
                f"stopwatch drive `_decide_event` took {per:.3f} ms per instance ({events:.1f} "
                f"events, its commit and the commands' delivery awaited), "
                f"{decide[1] / profile.drive_seconds:.0f} in flight on average: "
                f"{done:,.0f} transitions/s."
            )
    return lines


DRIVE_LABELS = {
    "_decide_event": "`ProcessRunner._decide_event` (the log follower on one event, "
    "instances side by side: PaymentCaptured, ShipmentBooked)",
    "_commit": "`ProcessRunner._commit` (decisions appended: transition, delivered, transition)",
    "_deliver": "`ProcessRunner._deliver` (send BookShipment, then commit `CommandsDelivered`)",
    "send": "`RouterSender.send` of `BookShipment` (router, engine, its append)",
    "append": "`store.append` (the runner's 3, BookShipment's, and the clients' CapturePayment)",
}


def profile_lines(profile: Profile, top: int = 14) -> list[str]:
    n = profile.instances
    wall = profile.wall
    fire = wall.get("_fire", (0, 0.0))[1] or 1.0
    lines = [
        f"### {profile.store}: {n:,} timers falling due at once",
        "",
        f"Stopwatch run: all fired and delivered {profile.seconds:.2f} s after falling due "
        f"({n / profile.seconds:,.0f} timers/s); the event loop's thread used "
        f"{profile.loop_cpu:.2f} s of CPU in that time ({profile.loop_cpu / profile.seconds:.0%}"
        f" of the wall time), the whole process {profile.process_cpu:.2f} s.",
        "",
        "| timer task, wall time (awaits included) | calls per timer | ms per timer "
        "| share of `_fire` |",
        "|---|---|---|---|",
    ]
    for name, label in WALL_LABELS.items():
        if name in wall:
            calls, seconds = wall[name]
            lines.append(
                f"| {label} | {calls / n:.1f} | {seconds / n * 1000:.3f} | {seconds / fire:.0%} |"
            )
    stats = profile.stats.stats  # type: ignore[attr-defined]  # (file, line, name) -> tuple
    total = sum(row[2] for row in stats.values()) or 1.0  # own time of every function
    lines += [
        "",
        f"cProfile run ({n:,} more timers, {profile.profiled_seconds:.2f} s from due to the "
        f"last delivered under the profiler; event-loop CPU {total:.2f} s; "
        "share = cumulative time / that):",
        "",
        "| catgad function (cumulative) | share | calls per timer |",
        "|---|---|---|",
    ]
    ours = [(k, v) for k, v in stats.items() if "/catgad/" in k[0].replace("\\", "/")]
    ours.sort(key=lambda kv: kv[1][3], reverse=True)
    for key, row in ours[:top]:
        lines.append(f"| `{_where(key)}` | {row[3] / total:.0%} | {row[1] / n:.1f} |")
    lines += ["", "| any function (own time) | share | calls per timer |", "|---|---|---|"]
    mine = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for key, row in mine[:12]:
        lines.append(f"| `{_where(key)}` | {row[2] / total:.0%} | {row[1] / n:.1f} |")
    if profile.drive_wall:
        seconds = profile.drive_seconds
        lines += [
            "",
            f"Stopwatch, driven: {n:,} more instances driven to done "
            f"({TRANSITIONS_PER_INSTANCE * n / seconds:,.0f} transitions/s, "
            f"{seconds:.2f} s); the event loop's thread busy {profile.drive_cpu / seconds:.0%} "
            "of the time. The clients' appends overlap the follower's work.",
            "",
            "| log follower, wall time (awaits included) | calls per instance | ms per instance "
            "| share of the wall time |",
            "|---|---|---|---|",
        ]
        for name, label in DRIVE_LABELS.items():
            if name in profile.drive_wall:
                calls, spent = profile.drive_wall[name]
                lines.append(
                    f"| {label} | {calls / n:.1f} | {spent / n * 1000:.3f} "
                    f"| {spent / seconds:.0%} |"
                )
    return [*lines, ""]


def markdown(results: Results, args: argparse.Namespace, command: str, loop: str) -> str:
    version = package_version
    facts = [
        ("cores", str(os.cpu_count())),
        ("CPU", cpu_model()),
        ("OS", platform.platform()),
        ("Python", sys.version.split()[0]),
        ("SQLite", sqlite3.sqlite_version),
        ("catgad", f"{version('catgad')} ({results.checkout}, at the start of the run)"),
        ("event loop", f"{loop} (uvloop {version('uvloop')})"),
    ]
    lines = [
        "# catgad process benchmark",
        "",
        "Generated by `python -m bench.processes`; do not edit by hand. Method: the module",
        "docstring of [processes.py](processes.py).",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- workload: the process `Fulfilment` (as config/examples/fulfilment.yaml, without the "
        f"approval; rule commands), {args.instances:,} instances per run, "
        f"{args.concurrency} clients in flight; steady timers due at {args.rate:,}/s",
        f"- repeats: {args.repeat}, workloads interleaved (rotated) within each; medians shown",
        "- load (1-minute average) at start and end: "
        + " and ".join(f"{load:.2f}" for load in results.load)
        + " (the machine is shared)",
        "",
        "## Machine",
        "",
        "| fact | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in facts],
        "",
    ]
    if TRANSITIONS in results.workloads:
        lines += [
            "## Transitions driven by events",
            "",
            f"{args.instances:,} instances started (PlaceOrder each), then each driven by "
            "CapturePayment (awaiting_payment -> shipping, which sends BookShipment) and the "
            "ShipmentBooked that answers it (shipping -> done). Counted: the "
            "`process.Transitioned` decisions the runner appended while driving (2 per "
            "instance, read from its `catgad_process_transitions_total`), over the time from "
            "the first CapturePayment to the last instance's `process.Finished` read back by "
            "the runner's log follower. starts/s: instances started (`process.Started` read "
            "back) per second of placing them. p50/p99: per instance, CapturePayment called "
            "to its `Finished` read back.",
            "",
            *transitions_table(results),
            "",
        ]
    if BURST in results.workloads:
        lines += [
            f"## {args.instances:,} timers falling due at once",
            "",
            "Every instance's payment deadline falls due at the same moment (the runner's "
            "clock is held while they are placed, then runs on at the real rate). fired/s: "
            "timers fired per second from that moment to the last one fired; lateness: "
            "`at - due` of each instance's `process.TimerFired`, read back from the store.",
            "",
            *timers_table(results, BURST),
            "",
        ]
    if STEADY in results.workloads:
        lines += [
            f"## Timers falling due at a steady {args.rate:,}/s (the aim)",
            "",
            f"{args.instances:,} instances placed beforehand with start times "
            f"{1000 / args.rate:g} ms apart (in steps of {args.step * 1000:g} ms), so their "
            "deadlines fall due at that rate while the runner has nothing else to do. Aim "
            f"(the issue's): lateness p99 < {AIM:g} s.",
            "",
            *timers_table(results, STEADY),
            "",
        ]
    if LIVE in results.workloads:
        lines += [
            f"## Orders placed at {args.rate:,}/s, deadline {args.live_deadline:g} s",
            "",
            "The real clock throughout: orders arrive at the rate, each instance started as "
            "the runner reads its OrderPlaced, its deadline falling due that long after; the "
            "runner starts instances and fires timers at once. due/s is what the starts "
            "allowed.",
            "",
            *timers_table(results, LIVE),
            "",
        ]
    if results.resume:
        lines += [
            f"## A daemon starting with {args.waiting:,} instances waiting, {args.due:,} due",
            "",
            "The store holds the instances' decisions, their rows in the process index and the "
            "runner's checkpoint at the head of the log, as a stopped daemon left them (filled "
            'directly: bench/processes_resume.py). due query: one "due at or before now, up '
            "to 512\" on the index; ready: a new runner's `start()` to its log follower caught "
            "up from the checkpoint, when timers begin to fire; due fired / delivered after: "
            "from ready to the last `TimerFired` / `CommandsDelivered` read back. The last "
            "column is the log read from position 0 (batches of 500) that the runner did "
            "before it was ready when it rebuilt an in-memory index of every instance from "
            "the log (before the process index), for comparison.",
            "",
            *resume_table(results.resume),
            "",
        ]
    if results.profiles:
        lines += [
            "## Findings (computed from the figures and the profile below)",
            "",
            *findings(results),
            "",
        ]
    if results.profiles:
        lines += [
            "## Where the time goes: timers, then transitions",
            "",
            "One more run per store after the measured ones, not timed: a burst with a "
            "stopwatch on the runner's timer path (instance attributes wrapping its methods; "
            "wall time, awaits included: timers are fired side by side, so these add up to "
            "more than the wall time), then another burst in the same runtime under cProfile "
            "(the event loop's thread only: the SQLite store's writer and reader threads are "
            "not seen; a coroutine's calls count each of its resumptions), then as many "
            "instances driven to done by events under the stopwatch.",
            "",
        ]
        for profile in results.profiles:
            lines += profile_lines(profile)
    return "\n".join(lines)
