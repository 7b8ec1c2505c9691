"""One benchmark run: every selected system, every durability, `repeats` times, then the report.

    python -m bench.run --quick          # or: catgad bench --quick

Within a repeat the systems run one after the other on fresh files, so a
burst of noise from other work on the machine hits one repeat of each rather
than all repeats of one system. A system whose store does not hold exactly
the expected events after its run stops the benchmark: no figure is reported
for a wrong run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import report as reporting
from bench.workload import Measurement, Workload
from catgad.cli.bench_options import add_arguments

SYSTEMS = ("raw", "eventsourcing", "engine", "http")
SYNCS = ("full", "normal")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"
QUICK_AGGREGATES = 20


@dataclass(slots=True)
class Options:
    aggregates: int = 1000
    rounds: int = 1
    concurrency: int = 64
    synchronous: tuple[str, ...] = SYNCS
    only: tuple[str, ...] = SYSTEMS
    repeat: int = 3
    output: Path | None = DEFAULT_OUTPUT
    workdir: Path | None = None  # keep the databases here; a temporary directory otherwise
    command: str = "catgad bench"  # the exact invocation, for RESULTS.md
    notes: list[str] = field(default_factory=list)

    @property
    def workload(self) -> Workload:
        return Workload(
            aggregates=self.aggregates, rounds=self.rounds, concurrency=self.concurrency
        )


Runner = Callable[[Workload, str, Path, Callable[[int], None]], Measurement]


def _runners(only: Sequence[str]) -> list[tuple[str, str, Runner]]:
    """(system, label, runner) in the order they run within a repeat; imports only what runs."""
    out: list[tuple[str, str, Runner]] = []
    if "raw" in only:
        from bench import raw_sqlite

        out.append(
            (
                "raw",
                "raw sqlite3, tx per batch",
                lambda w, s, d, p: raw_sqlite.run(w, s, d / "raw.db", per_event=False, progress=p),
            )
        )
        out.append(
            (
                "raw",
                "raw sqlite3, tx per event",
                lambda w, s, d, p: raw_sqlite.run(w, s, d / "raw.db", per_event=True, progress=p),
            )
        )
    if "eventsourcing" in only:
        from bench import es_baseline

        out.append(
            (
                "eventsourcing",
                "eventsourcing, cached",
                lambda w, s, d, p: es_baseline.run(w, s, d / "es.db", cache=True, progress=p),
            )
        )
        out.append(
            (
                "eventsourcing",
                "eventsourcing, no cache",
                lambda w, s, d, p: es_baseline.run(w, s, d / "es.db", cache=False, progress=p),
            )
        )
    if "engine" in only:
        from bench import catgad_engine

        out.append(
            ("engine", "catgad engine", lambda w, s, d, p: catgad_engine.run(w, s, d, progress=p))
        )
    if "http" in only:
        from bench import catgad_http

        out.append(
            (
                "http",
                "catgad http, httpx",
                lambda w, s, d, p: catgad_http.run(w, s, d, client="httpx", progress=p),
            )
        )
        out.append(
            (
                "http",
                "catgad http, raw client",
                lambda w, s, d, p: catgad_http.run(w, s, d, client="raw", progress=p),
            )
        )
    return out


class ProgressSink:
    """A rich progress bar on a terminal, plain progress lines on stderr otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    @contextmanager
    def session(self) -> Iterator[None]:
        if self.live:
            with self._bar:
                yield
        else:
            yield

    def task(self, label: str, total: int) -> Callable[[int], None]:
        if self.live:
            task_id = self._bar.add_task(label, total=total)
            return lambda n: self._bar.advance(task_id, n)
        done = [0, 0]  # commands done, last decile printed
        print(f"bench: {label}: start ({total:,} commands)", file=sys.stderr, flush=True)

        def advance(n: int) -> None:
            done[0] += n
            decile = done[0] * 10 // max(total, 1)
            if decile > done[1] and decile < 10:
                done[1] = decile
                print(f"bench: {label}: {done[0]:,}/{total:,}", file=sys.stderr, flush=True)

        return advance

    def finished(self, label: str, m: Measurement) -> None:
        line = (
            f"bench: {label}: {m.cmds_per_s:,.0f} cmds/s, p50 {m.p50_ms:.2f} ms, "
            f"p99 {m.p99_ms:.2f} ms, {m.verified_events:,} events verified"
        )
        if self.live:
            self.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)


def run_benchmark(options: Options, console: Console | None = None) -> reporting.Report:
    console = console or Console(stderr=True)
    workload = options.workload
    runners = _runners(options.only)
    sink = ProgressSink(console)
    result = reporting.Report(
        workload=workload,
        repeats=options.repeat,
        command=options.command,
        measurements=[],
        notes=list(options.notes),
    )
    load_before = _load_average()
    with _workdir(options.workdir) as root, sink.session():
        for rep in range(options.repeat):
            measured: list[Measurement] = []
            for sync in options.synchronous:
                for index, (_system, label, runner) in enumerate(runners):
                    where = root / f"rep{rep + 1}" / sync / f"{index}-{label.split(',')[0]}"
                    where = where.with_name(where.name.replace(" ", "-"))
                    where.mkdir(parents=True, exist_ok=True)
                    title = f"[{rep + 1}/{options.repeat}] {sync:<6} {label}"
                    m = runner(workload, sync, where, sink.task(title, workload.expected_commands))
                    sink.finished(title, m)
                    measured.append(m)
            result.measurements.append(measured)
    result.notes.append(
        f"total wall time of the run: {time.time() - result.started.timestamp():.0f} s; "
        f"load average (1 min) {load_before} before, {_load_average()} after: the machine "
        "is shared, so the spread of each row is part of the result"
    )
    return result


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


@contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="catgad-bench-") as tmp:
        yield Path(tmp)


def options_from(args: argparse.Namespace) -> Options:
    """Options from the arguments of `catgad bench` (see catgad.cli.bench_options)."""
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = sorted(set(only) - set(SYSTEMS))
    if unknown or not only:
        raise ValueError(
            f"--only: unknown system(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(SYSTEMS)}"
        )
    aggregates = args.aggregates or (QUICK_AGGREGATES if args.quick else 1000)
    repeat = args.repeat or (1 if args.quick else 3)
    if min(aggregates, args.rounds, args.concurrency, repeat) < 1:
        raise ValueError("--aggregates, --rounds, --concurrency and --repeat must be >= 1")
    output = DEFAULT_OUTPUT if args.output is None else args.output
    options = Options(
        aggregates=aggregates,
        rounds=args.rounds,
        concurrency=args.concurrency,
        synchronous=SYNCS if args.synchronous == "both" else (args.synchronous,),
        only=tuple(s for s in SYSTEMS if s in only),
        repeat=repeat,
        output=None if str(output) == "-" else output,
        workdir=args.workdir,
    )
    options.command = command_line(options, args)
    return options


def command_line(options: Options, args: argparse.Namespace) -> str:
    """The `catgad bench` invocation that reproduces this run, every size spelled out."""
    words = ["catgad", "bench", "--aggregates", str(options.aggregates)]
    if options.rounds != 1:
        words += ["--rounds", str(options.rounds)]
    words += [
        "--concurrency",
        str(options.concurrency),
        "--synchronous",
        args.synchronous,
        "--repeat",
        str(options.repeat),
    ]
    if options.only != SYSTEMS:
        words += ["--only", ",".join(options.only)]
    if args.output is not None:
        words += ["--output", str(args.output)]
    return shlex.join(words)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    return execute(options)


def execute(options: Options) -> int:
    console = Console(stderr=True)
    result = run_benchmark(options, console)
    out = Console()
    reporting.print_tables(result, out if out.is_terminal else Console(width=160))
    if options.output is not None:
        reporting.write(result, options.output)
        console.print(f"results written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
