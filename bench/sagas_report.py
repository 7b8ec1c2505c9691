"""The saga benchmark's figures: medians over repeats, ratios, the profile, RESULTS-sagas.md.

Measured by bench/sagas.py (the method is in its docstring).
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

from bench.report import checkout, cpu_model, package_version

CLIENT, SAGA, SETTLED = "client", "saga", "saga-settled"
SYSTEMS = (CLIENT, SAGA, SETTLED)
LABELS = {
    CLIENT: "client: 3 commands in a row",
    SAGA: "saga: begin, wait for completed",
    SETTLED: "saga, waited with settled()",
}
COMMANDS_PER_ORDER = 3
AIM = 0.5  # saga / client, orders per second
BOUND = [
    "A Python process runs Python code on one core at a time (the interpreter lock): with",
    "about one core busy, orders/s follow the CPU each order costs. The saga writes its",
    "decisions before each command goes out and records each outcome (SPEC section 10), in",
    "4 appends of its own beside the 3 commands' (the outcome of a step and the announcement",
    "of the next share one append), and its log follower reads them back. With an append of",
    "a decision costing about what a command's append costs, 3 appends against 7 put the",
    "saga near 0.43x of the client at best, before any other work of its own.",
]


@dataclass(slots=True)
class Run:
    """One system on one store in one repeat."""

    orders: int
    seconds: float
    cpu_seconds: float  # the process's CPU time over every thread (time.process_time)
    latencies: list[float] = field(repr=False)  # seconds, start to completed, one per order
    stored: int  # events read back and checked after the run

    @property
    def per_s(self) -> float:
        return self.orders / self.seconds

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per order, every thread of the process."""
        return self.cpu_seconds / self.orders * 1e6

    @property
    def cores(self) -> float:
        """Cores kept busy on average: CPU seconds per wall second."""
        return self.cpu_seconds / self.seconds

    @property
    def cmds_per_s(self) -> float:
        return self.orders * COMMANDS_PER_ORDER / self.seconds

    def pct(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in ms."""
        ordered = sorted(self.latencies)
        rank = min(len(ordered), max(1, math.ceil(p / 100 * len(ordered))))
        return ordered[rank - 1] * 1000


@dataclass(slots=True)
class Profile:
    """An untimed saga run under cProfile, with the store's calls counted."""

    store: str
    orders: int
    seconds: float
    client_calls: dict[str, int]  # store method -> calls during a client run of as many orders
    calls: dict[str, int]  # store method -> calls during the saga run
    stats: pstats.Stats = field(repr=False)


@dataclass(slots=True)
class Results:
    stores: list[str]
    systems: list[str]
    runs: dict[str, dict[str, list[Run]]] = field(default_factory=dict)  # store -> system -> runs
    profiles: list[Profile] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end
    # the tree measured: taken at the start (another engineer may commit during a run)
    checkout: str = field(default_factory=checkout)

    def __post_init__(self) -> None:
        for store in self.stores:
            self.runs.setdefault(store, {s: [] for s in self.systems})

    def median(self, store: str, system: str, what: str) -> float:
        runs = self.runs[store][system]
        values = [r.pct(float(what[1:])) if what.startswith("p") else getattr(r, what)
                  for r in runs]  # fmt: skip
        return float(statistics.median(values))

    def ratio(self, store: str, system: str, what: str = "per_s") -> list[float]:
        """system / client, orders per second (or another Run figure), one per repeat."""
        pairs = zip(self.runs[store][system], self.runs[store][CLIENT], strict=True)
        return [getattr(top, what) / getattr(bottom, what) for top, bottom in pairs]


def _cell(values: list[float]) -> str:
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:,.0f}"
    return f"{mid:,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def figures(results: Results) -> list[str]:
    lines = [
        "| store | system | orders/s median [min-max] | commands/s | p50 ms | p99 ms "
        "| CPU µs/order | cores busy | events verified |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for store in results.stores:
        for system in results.systems:
            runs = results.runs[store][system]
            stored = ", ".join(f"{n:,}" for n in sorted({r.stored for r in runs}))
            lines.append(
                f"| {store} | {LABELS[system]} | {_cell([r.per_s for r in runs])} "
                f"| {_cell([r.cmds_per_s for r in runs])} "
                f"| {results.median(store, system, 'p50'):.2f} "
                f"| {results.median(store, system, 'p99'):.2f} "
                f"| {results.median(store, system, 'cpu_us'):,.0f} "
                f"| {results.median(store, system, 'cores'):.2f} | {stored} |"
            )
    return lines


def ratios(results: Results) -> list[str]:
    lines = [
        "| store | ratio (orders/s) | value | aim | met | client CPU / saga CPU, per order |",
        "|---|---|---|---|---|---|",
    ]
    if CLIENT not in results.systems:
        return []
    for store in results.stores:
        for system in results.systems:
            if system == CLIENT:
                continue
            value = statistics.median(results.ratio(store, system))
            cpu = statistics.median(1 / r for r in results.ratio(store, system, "cpu_us"))
            aim, met = ("", "")
            if system == SAGA:
                aim, met = f">= {AIM:g}x", "yes" if value >= AIM else "no"
            lines.append(
                f"| {store} | {system} / client | {value:.2f}x | {aim} | {met} | {cpu:.2f}x |"
            )
    return lines


def findings(results: Results) -> list[str]:
    """What the CPU figures say about the ratio, store by store."""
    if CLIENT not in results.systems or SAGA not in results.systems:
        return []
    appends = {p.store: p.calls.get("append", 0) / p.orders for p in results.profiles}
    lines = []
    for store in results.stores:
        saga, client = (results.median(store, s, "cpu_us") for s in (SAGA, CLIENT))
        cores = [results.median(store, s, "cores") for s in (SAGA, CLIENT)]
        rate = statistics.median(results.ratio(store, SAGA))
        line = (
            f"- {store}: a saga costs {saga:,.0f} µs of CPU per order (every thread), the "
            f"client {client:,.0f} µs: {client / saga:.2f}x, where the rate ratio is "
            f"{rate:.2f}x; cores busy {cores[0]:.2f} (saga) and {cores[1]:.2f} (client)"
        )
        if store in appends:
            line += f"; appends per order {appends[store]:.1f} (saga) and 3 (client)"
        lines.append(line + ".")
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


def profile_lines(profile: Profile, top: int = 14) -> list[str]:
    stats = profile.stats.stats  # type: ignore[attr-defined]  # (file, line, name) -> tuple
    total = sum(row[2] for row in stats.values()) or 1.0  # own time of every function

    def per(calls: dict[str, int]) -> str:
        return ", ".join(f"{name} {n / profile.orders:.1f}" for name, n in calls.items())

    lines = [
        f"### {profile.store}: {profile.orders:,} sagas in {profile.seconds:.2f} s under cProfile",
        "",
        f"- store calls per order: saga {per(profile.calls)}; client {per(profile.client_calls)}",
        f"- profiled event-loop CPU: {total:.2f} s; share = cumulative time / that",
        "",
        "| catgad function (cumulative) | share | calls per saga |",
        "|---|---|---|",
    ]
    ours = [(k, v) for k, v in stats.items() if "/catgad/" in k[0].replace("\\", "/")]
    ours.sort(key=lambda kv: kv[1][3], reverse=True)
    for key, row in ours[:top]:
        lines.append(f"| `{_where(key)}` | {row[3] / total:.0%} | {row[1] / profile.orders:.1f} |")
    lines += ["", "| any function (own time) | share | calls per saga |", "|---|---|---|"]
    mine = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for key, row in mine[:10]:
        lines.append(f"| `{_where(key)}` | {row[2] / total:.0%} | {row[1] / profile.orders:.1f} |")
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
        "# catgad saga benchmark",
        "",
        "Generated by `python -m bench.sagas`; do not edit by hand. Method: the module",
        "docstring of [sagas.py](sagas.py).",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- workload: {args.orders:,} orders per run, each ReserveStock -> ChargePayment -> "
        f"BookShipment (rule commands, one event each): by a client calling the engine, or "
        f"as the 3 steps of the saga `Bench`; {args.concurrency} orders in flight",
        f"- repeats: {args.repeat}, systems interleaved (rotated) within each; medians shown",
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
        "## Figures",
        "",
        *figures(results),
        "",
        "Latency: from the first command's call (the client) or `begin` (the saga) to the",
        "third command's answer (the client) or the instance's `completed` in the runner's",
        "index (the saga); nearest rank over every order of a run, median over the repeats.",
        "",
    ]
    if CLIENT in results.systems and len(results.systems) > 1:
        lines += ["## Ratios (median of the per-repeat ratios)", "", *ratios(results), ""]
        if reading := findings(results):
            lines += ["## Reading the figures", "", *reading, "", *BOUND, ""]
    if results.profiles:
        lines += [
            "## Where the saga path's time goes",
            "",
            "One more saga run per store after the measured ones, not timed, under cProfile",
            "(the event loop's thread only: the SQLite store's writer and reader threads are",
            "not seen). A coroutine's cumulative time sums its steps; nested calls are counted",
            "in their callers too, so shares do not add up to 100%. A coroutine's calls count",
            "each of its resumptions (on SQLite, every wait on the store resumes it once more).",
            "",
        ]
        for profile in results.profiles:
            lines += profile_lines(profile)
    return "\n".join(lines)
