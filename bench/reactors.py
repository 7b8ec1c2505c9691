"""What the reactor suites (bench.sagas, bench.processes) share: running one on the event loop
`catgad run` uses, in a scratch folder, and writing its report, or no figures at all."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

from bench.catgad_engine import loop_factory, loop_name
from bench.workload import VerificationError


def run_suite(
    suite: str,
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    benchmark: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, Any]],
    markdown: Callable[[Any, argparse.Namespace, str, str], str],
) -> int:
    """Run `benchmark` and write what `markdown` makes of its results to `args.output` ("-":
    stdout); exit 1, with no figures, when a run ended or stored the wrong thing."""
    # the runners' and leases' info lines would bury the progress
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"catgad-bench-{suite}-"))
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:  # as `catgad run`
            results: Any = runner.run(benchmark(args, workdir))
    except VerificationError as exc:
        print(f"bench.{suite}: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    command = f"python -m bench.{suite} " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(results, args, command.strip(), loop_name())
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
