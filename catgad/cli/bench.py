"""`catgad bench [SUITE]`: catgad against raw clients and `eventsourcing`, figures to bench/.

The benchmarks live in the top-level `bench/` directory of a source checkout
(they measure catgad against raw clients and the `eventsourcing` library, which
an installed daemon has no use for). This verb finds it beside the `catgad`
package when it is not importable already. The default suite, the Order
workload, runs in this process; every other suite runs as `python -m
bench.<module>` in a process of its own (each sets up its own event loop,
servers and collector), with the arguments after the suite's name passed on.
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
from catgad.errors import (
    BenchFailed,
    UsageError,
)

SYSTEMS = ("raw", "eventsourcing", "engine", "http")
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
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options; `python -m bench.run` takes the same."""
    parser.add_argument(
        "--aggregates",
        type=int,
        default=None,
        metavar="N",
        help="orders in the workload (default 1000; 20 with --quick)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="run the workload N times on fresh order ids (default 1)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        metavar="N",
        help="orders in flight: engine workers, HTTP connections, raw sqlite3 "
        "batch size (default 64)",
    )
    parser.add_argument(
        "--synchronous",
        choices=("full", "normal", "both"),
        default="both",
        help="SQLite durability, the same for every system (default: both, full first)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SYSTEMS),
        metavar="LIST",
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="runs of each system, medians reported (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke size: 20 orders and one repeat, unless given otherwise",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="results file (default bench/RESULTS.md of the checkout; '-' for none)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the databases and daemon logs in DIR (default: a "
        "temporary directory, removed afterwards)",
    )


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


def run_suite(suite: str, argv: Sequence[str]) -> int:
    """Run a suite other than the Order workload as `python -m bench.<module> ARGV`."""
    module, _ = SUITES[suite]
    root = checkout_root()
    if not (root / "bench" / f"{module}.py").is_file():
        print(
            f"catgad bench: {suite} needs a source checkout: bench/{module}.py was not found"
            f" beside {root / 'catgad'}",
            file=sys.stderr,
        )
        return 2
    try:
        return subprocess.call([sys.executable, "-m", f"bench.{module}", *argv], cwd=root)
    except KeyboardInterrupt:
        return 130


def locate_bench() -> ModuleType:
    """`bench.run` of the checkout holding this catgad, else an installed `bench` package.

    Another module named `bench` may already be imported (under pytest,
    `tests/bench/` is a namespace package of that name): it is set aside.
    """
    root = checkout_root()
    ours = root / "bench"
    if (ours / "run.py").is_file():
        loaded = sys.modules.get("bench")
        if loaded is not None and Path(getattr(loaded, "__file__", None) or "").parent != ours:
            for name in [n for n in sys.modules if n == "bench" or n.startswith("bench.")]:
                del sys.modules[name]
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    try:
        return importlib.import_module("bench.run")
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", "bench.run"):
            raise
    raise UsageError(
        f"catgad bench needs a source checkout: bench/ was not found beside {root / 'catgad'}"
    )


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
