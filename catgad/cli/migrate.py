"""`catgad migrate CONFIG`: rewrite stored events to their newest schema version.

Progress goes to stderr, the report to stdout. Exit 0 when every outdated
event was upcast, 1 when some failed (they are listed and left as they are),
130 when interrupted: run it again to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import TextIO

from catgad.app.load import load_config
from catgad.evolution.migrate import MigrationReport, migrate
from catgad.evolution.upcast import Upcasters
from catgad.handlers.registry import load_plugins
from catgad.model import Config
from catgad.store.factory import open_store

SHOWN_FAILURES = 20


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="rewrite stored events to their newest schema version",
        description="Upcast every stored event below its type's `version` through the "
        "config's upcasters and write it back in place (data and dataschemaversion; ids, "
        "streams, versions and positions stay). Safe to interrupt and run again: it "
        "resumes where it stopped. A daemon may keep running meanwhile.",
    )
    parser.add_argument("config", metavar="CONFIG", help="the service's YAML file")
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would change; write nothing"
    )
    parser.add_argument(
        "--batch", type=_positive, default=500, metavar="N", help="events per transaction"
    )
    parser.add_argument(
        "--limit", type=_positive, default=None, metavar="N", help="stop after upcasting N events"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    upcasters = Upcasters(config, load_plugins(config))
    report = asyncio.run(_run(config, upcasters, args))
    for line in summary(report):
        print(line)
    if report.stopped == "interrupted":
        return 130
    return 1 if report.failed else 0


async def _run(config: Config, upcasters: Upcasters, args: argparse.Namespace) -> MigrationReport:
    store = open_store(config.store)
    printer = _Progress(sys.stderr, quiet=args.quiet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(sig, stop.set)
    await store.open()
    try:
        report = await migrate(
            store,
            config,
            upcasters,
            dry_run=args.dry_run,
            batch=args.batch,
            limit=args.limit,
            progress=printer,
            should_stop=stop.is_set,
        )
    finally:
        await store.close()
    printer.done(report)
    return report


class _Progress:
    """A line on stderr every half second (rewritten in place on a terminal)."""

    def __init__(self, out: TextIO, *, quiet: bool, every: float = 0.5) -> None:
        self.out = out
        self.quiet = quiet
        self.every = every
        self.tty = out.isatty()
        self.last = 0.0

    def __call__(self, report: MigrationReport) -> None:
        now = time.monotonic()
        if self.quiet or now - self.last < self.every:
            return
        self.last = now
        self._line(report)

    def done(self, report: MigrationReport) -> None:
        if not self.quiet:
            self._line(report)
            if self.tty:
                self.out.write("\n")
            self.out.flush()

    def _line(self, report: MigrationReport) -> None:
        verb = "to upcast" if report.dry_run else "upcast"
        text = (
            f"migrate: {report.scanned:,} events scanned, {report.upcast:,} {verb}, "
            f"{report.normalised:,} {'to normalise' if report.dry_run else 'normalised'}, "
            f"{report.current:,} current, {len(report.failed):,} failed "
            f"({report.rate:,.0f} events/s)"
        )
        if self.tty:
            self.out.write("\r" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()


def summary(report: MigrationReport) -> list[str]:
    """The report as printed on stdout."""
    lines = ["dry run: nothing was written" if report.dry_run else "migration done"]
    if report.stopped == "interrupted":
        lines[0] = "interrupted: run `catgad migrate` again to resume"
    elif report.stopped == "limit":
        lines[0] = "stopped at --limit: run `catgad migrate` again to continue"
    verb = "to upcast" if report.dry_run else "upcast"
    lines.append(f"scanned:     {report.scanned:,} events in {report.elapsed:.2f}s")
    lines.append(f"{verb + ':':<12} {report.upcast:,}")
    for (event_type, old, new), count in sorted(report.steps.items()):
        lines.append(f"  {event_type} {old} -> {new}: {count:,}")
    if report.normalised:
        verb = "to normalise" if report.dry_run else "normalised"
        lines.append(
            f"{verb + ':':<12} {report.normalised:,} (numbers stored otherwise than their "
            "schema declares, such as 5.0 for an integer)"
        )
    lines.append(f"current:     {report.current:,}")
    if report.unreachable:
        lines.append(
            f"no upcaster: {report.unreachable:,} (older than their type's version, "
            "which declares no upcasters; read as stored)"
        )
    lines.append(f"failed:      {len(report.failed):,}")
    for failure in report.failed[:SHOWN_FAILURES]:
        lines.append(
            f"  {failure.event_id} ({failure.event_type} in {failure.stream}): {failure.why}"
        )
    if len(report.failed) > SHOWN_FAILURES:
        lines.append(f"  … and {len(report.failed) - SHOWN_FAILURES:,} more")
    return lines
