"""`catgad bench [SUITE]`: catgad against raw clients and `eventsourcing`, figures to bench/.

The benchmarks live in the top-level `bench/` directory of a source checkout
(they measure catgad against raw clients and the `eventsourcing` library, which
an installed daemon has no use for, so a wheel leaves them out). This verb
finds it beside the `catgad` package; an installed catgad says so in one line
and exits 2. The default suite, the Order workload, runs in this process;
every other suite runs as `python -m bench.<module>` in a process of its own
(each sets up its own event loop, servers and collector), with the arguments
after the suite's name passed on.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import catgad
from catgad.cli.bench_options import add_arguments
from catgad.errors import BenchFailed, UsageError

ORDERS = "orders"
# suite -> (module under bench/, what it measures); each writes its own RESULTS-*.md
SUITES: dict[str, tuple[str, str]] = {
    "stores": ("stores", "appends/s of each store against its raw client (RESULTS-stores.md)"),
    "bus": ("bus_relay", "publish, consume and the outbox relay against raw clients"),
    "handlers": ("handlers", "a YAML rule, a Python plugin and a signed webhook"),
    "projections": ("projections", "rebuild of 1,000,000 events and live lag per target"),
    "replicas": ("replicas", "two `catgad run` against one on a shared store and bus"),
    "sagas": ("sagas", "a 3-step saga against a client sending the same 3 commands"),
    "processes": ("processes", "transitions/s, 10,000 timers at once, lateness at 1,000/s"),
    "http": ("http_wrk", "wrk: a bare endpoint, an eventsourcing peer, catgad 1 and N workers"),
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure commands/s and latency against raw sqlite3 and eventsourcing",
        description="Run the Order workload (CreateOrder, PayOrder, ShipOrder per order) "
        "through the in-process engine and a `catgad run` daemon over HTTP, and the same "
        "events through raw sqlite3 and the `eventsourcing` library, at the same SQLite "
        "durability. Every run checks the store holds exactly the expected events. Prints "
        "a table and writes the figures and ratios to bench/RESULTS.md.",
    )
    parser.add_argument(
        "suite",
        nargs="?",
        default=ORDERS,
        choices=(ORDERS, *SUITES),
        help=f"what to measure (default {ORDERS}, the options below); any other suite takes "
        "its own options: `catgad bench SUITE --help`. "
        + "; ".join(f"{name}: {what}" for name, (_, what) in SUITES.items()),
    )
    add_arguments(parser)


def checkout_root() -> Path:
    return Path(catgad.__file__).resolve().parent.parent


def no_checkout(root: Path) -> str:
    """Why an installed catgad (a wheel has no bench/) cannot benchmark: one line."""
    return (
        "benchmarks run from a source checkout of catgad (its bench/ directory beside"
        f" catgad/); this catgad, at {root / 'catgad'}, is installed without one"
    )


def run_suite(suite: str, argv: Sequence[str]) -> int:
    """Run a suite other than the Order workload as `python -m bench.<module> ARGV`."""
    module, _ = SUITES[suite]
    root = checkout_root()
    if not (root / "bench" / f"{module}.py").is_file():
        print(f"catgad bench: {no_checkout(root)}", file=sys.stderr)
        return 2
    try:
        return subprocess.call([sys.executable, "-m", f"bench.{module}", *argv], cwd=root)
    except KeyboardInterrupt:
        return 130


def locate_bench() -> ModuleType:
    """`bench.run` of the checkout holding this catgad; a UsageError without one.

    Another module named `bench` may already be imported (under pytest,
    `tests/bench/` is a namespace package of that name): it is set aside.
    """
    root = checkout_root()
    ours = root / "bench"
    if not (ours / "run.py").is_file():
        raise UsageError(no_checkout(root))
    loaded = sys.modules.get("bench")
    if loaded is not None and Path(getattr(loaded, "__file__", None) or "").parent != ours:
        for name in [n for n in sys.modules if n == "bench" or n.startswith("bench.")]:
            del sys.modules[name]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("bench.run")


def run(args: argparse.Namespace) -> int:
    runner = locate_bench()
    workload = importlib.import_module("bench.workload")
    try:
        options = runner.options_from(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        code: int = runner.execute(options)
    except (workload.VerificationError, RuntimeError) as exc:
        raise BenchFailed(str(exc)) from None
    return code
