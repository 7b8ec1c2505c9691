"""Summaries of the measurements: medians over repeats, ratios, the rich table and RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.workload import Measurement, Workload, median

ENGINE, HTTP, RAW, ES = "catgad engine", "catgad http", "raw sqlite3", "eventsourcing"
RAW_BATCH_PREFIX = "tx per batch"
AIM_VS_ES = 2.0
AIM_VS_RAW = 0.5


@dataclass(slots=True)
class Row:
    """One system/variant at one durability: medians over the repeats."""

    synchronous: str
    system: str
    variant: str
    runs: list[Measurement]

    @property
    def cmds(self) -> list[float]:
        return [m.cmds_per_s for m in self.runs]

    @property
    def cmds_median(self) -> float:
        return median(self.cmds)

    @property
    def events_median(self) -> float:
        return median([m.events_per_s for m in self.runs])

    @property
    def p50_ms(self) -> float:
        return median([m.p50_ms for m in self.runs])

    @property
    def p99_ms(self) -> float:
        return median([m.p99_ms for m in self.runs])

    @property
    def verified(self) -> str:
        counts = sorted({m.verified_events for m in self.runs})
        return ", ".join(f"{c:,}" for c in counts)


@dataclass(slots=True)
class Ratio:
    name: str
    synchronous: str
    per_run: list[float]  # one ratio per repeat, numerator and denominator from the same repeat
    aim: float | None = None

    @property
    def value(self) -> float:
        return median(self.per_run)

    @property
    def met(self) -> str:
        if self.aim is None:
            return ""
        return "yes" if self.value >= self.aim else "no"


@dataclass(slots=True)
class Report:
    workload: Workload
    repeats: int
    command: str
    measurements: list[list[Measurement]]  # one list per repeat
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[Row]:
        grouped: dict[tuple[str, str, str], list[Measurement]] = {}
        for rep in self.measurements:
            for m in rep:
                grouped.setdefault((m.synchronous, m.system, m.variant), []).append(m)
        return [Row(s, sy, v, runs) for (s, sy, v), runs in grouped.items()]

    def ratios(self) -> list[Ratio]:
        """catgad (engine, each HTTP variant) over each baseline, per durability.

        Each ratio is taken within a repeat (numerator and denominator measured
        minutes apart) and the median of those is reported. Against
        eventsourcing the faster of its variants in that repeat is used.
        """
        out: list[Ratio] = []
        rows = self.rows()
        for sync in dict.fromkeys(r.synchronous for r in rows):
            for top in (r for r in rows if r.synchronous == sync and r.system in (ENGINE, HTTP)):
                name = "engine" if top.system == ENGINE else f"http ({_client(top.variant)})"
                for den, label, aim in (
                    (RAW, "raw sqlite3 (tx per batch)", AIM_VS_RAW),
                    (RAW_EVENT, "raw sqlite3 (tx per event)", None),
                    (ES, "eventsourcing (faster variant)", AIM_VS_ES),
                ):
                    per_run = self._ratio_runs(sync, top.variant, top.system, den)
                    if per_run:
                        goal = aim if top.system == ENGINE else None
                        out.append(Ratio(f"{name} / {label}", sync, per_run, goal))
        return out

    def _ratio_runs(self, sync: str, variant: str, system: str, den: str) -> list[float]:
        values: list[float] = []
        for rep in self.measurements:
            here = [m for m in rep if m.synchronous == sync]
            top = [m.cmds_per_s for m in here if m.system == system and m.variant == variant]
            bottom = [m.cmds_per_s for m in here if _baseline(m) == den]
            if top and bottom and max(bottom) > 0:
                values.append(top[0] / max(bottom))
        return values


RAW_EVENT = "raw sqlite3 per event"


def _baseline(m: Measurement) -> str:
    if m.system == RAW and not m.variant.startswith(RAW_BATCH_PREFIX):
        return RAW_EVENT
    return m.system


def _client(variant: str) -> str:
    return "httpx" if "httpx" in variant else "raw client"


def cpu_model() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> list[tuple[str, str]]:
    cpu = cpu_model()
    version = package_version
    return [
        ("cores", str(os.cpu_count())),
        ("CPU", cpu),
        ("OS", platform.platform()),
        ("Python", sys.version.split()[0]),
        ("SQLite", sqlite3.sqlite_version),
        ("catgad", f"{version('catgad')} ({checkout()})"),
        ("eventsourcing", version("eventsourcing")),
        (
            "httpx / uvicorn / uvloop",
            f"{version('httpx')} / {version('uvicorn')} / {version('uvloop')}",
        ),
    ]


def checkout() -> str:
    """The commit the measured tree is at, and whether it had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "catgad")
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    if not head:
        return "commit unknown"
    return f"commit {head}" + (", with uncommitted changes under catgad/" if dirty else "")


async def nats_version(url: str) -> str:
    """`nats-server X.Y.Z`, as the server at `url` announces itself."""
    import nats  # only the broker benchmarks need the client

    nc = await nats.connect(url)
    try:
        v = nc.connected_server_version
        return f"nats-server {v.major}.{v.minor}.{v.patch}"
    finally:
        await nc.close()


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _cmds_cell(row: Row) -> str:
    if len(row.runs) == 1:
        return _fmt(row.cmds_median)
    return f"{_fmt(row.cmds_median)} [{_fmt(min(row.cmds))}-{_fmt(max(row.cmds))}]"


HEADERS = (
    "durability",
    "system",
    "variant",
    "cmds/s median [min-max]",
    "events/s",
    "p50 ms",
    "p99 ms",
    "events verified",
)


def _row_cells(row: Row) -> tuple[str, ...]:
    return (
        row.synchronous,
        row.system,
        row.variant,
        _cmds_cell(row),
        _fmt(row.events_median),
        _fmt(row.p50_ms, 2),
        _fmt(row.p99_ms, 2),
        row.verified,
    )


def print_tables(report: Report, console: Console) -> None:
    table = Table(
        title=f"catgad bench: {report.workload.orders_total:,} orders, {report.repeats} repeat(s)"
    )
    for header in HEADERS:
        table.add_column(header, justify="right" if header[0] in "ecp" else "left")
    for row in report.rows():
        table.add_row(*_row_cells(row))
    console.print(table)
    ratios = Table(title="ratios of cmds/s (median of per-repeat ratios)")
    for header in ("durability", "ratio", "value", "aim", "met"):
        ratios.add_column(header)
    for r in report.ratios():
        ratios.add_row(
            r.synchronous, r.name, f"{r.value:.2f}x", f">= {r.aim:g}x" if r.aim else "", r.met
        )
    console.print(ratios)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def markdown(report: Report) -> str:
    w = report.workload
    lines = [
        "# catgad benchmark results",
        "",
        "Generated by `catgad bench`; method in [README.md](README.md). Do not edit by hand:",
        "re-run the command below.",
        "",
        f"- date: {report.started:%Y-%m-%d %H:%M} UTC",
        f"- command: `{report.command}`",
        f"- workload: Order, {w.aggregates:,} aggregates x {w.rounds} round(s) x 3 commands "
        f"(CreateOrder, PayOrder, ShipOrder; one event each) = {w.expected_commands:,} "
        f"commands, {w.concurrency} in flight",
        f"- repeats: {report.repeats}, systems interleaved within each repeat; medians shown",
        "",
        "## Machine",
        "",
        *_md_table(("fact", "value"), machine_facts()),
        "",
        "## Figures",
        "",
        *_md_table(HEADERS, [_row_cells(r) for r in report.rows()]),
        "",
        "## Ratios (cmds/s; median of the per-repeat ratios)",
        "",
        *_md_table(
            ("durability", "ratio", "value", "aim", "met"),
            [
                (r.synchronous, r.name, f"{r.value:.2f}x", f">= {r.aim:g}x" if r.aim else "", r.met)
                for r in report.ratios()
            ],
        ),
        "",
    ]
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    lines += _other_results()
    return "\n".join(lines)


def _other_results() -> list[str]:
    """Links to the results of the other benchmarks (bench/RESULTS-*.md, each generated by
    its own module, e.g. bench/handlers.py), so RESULTS.md stays the one place to start."""
    others = sorted(Path(__file__).resolve().parent.glob("RESULTS-*.md"))
    if not others:
        return []
    return ["## Other benchmarks", "", *[f"- [{p.name}]({p.name})" for p in others], ""]


def write(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(report), encoding="utf-8")
