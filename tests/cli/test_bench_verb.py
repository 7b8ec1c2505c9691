"""`catgad bench SUITE ...`: every suite is reachable from the verb, with its own options.

The suites' measurements have smoke tests of their own (tests/bench); here the
verb's dispatch: the suite's module gets the arguments unparsed, its exit code
comes back, and a suite that does not exist is a usage error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from catgad.cli.bench import SUITES
from tests.helpers.daemon import run_cli as catgad

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_each_suite_answers_its_own_help(suite: str) -> None:
    module, _ = SUITES[suite]
    done = catgad("bench", suite, "--help")
    assert done.returncode == 0, done.stderr
    assert module in done.stdout.split("\n", 1)[0]  # the module's own usage line


def test_a_suites_options_reach_it_unparsed() -> None:
    done = catgad("bench", "handlers", "--no-such-option")
    assert done.returncode == 2
    assert "python -m bench.handlers" in done.stderr
    assert "--no-such-option" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_verbs_help_lists_every_suite() -> None:
    done = catgad("bench", "--help")
    assert done.returncode == 0
    for suite in ("orders", *SUITES):
        assert suite in done.stdout


def test_an_unknown_suite_is_a_usage_error() -> None:
    done = catgad("bench", "nosuch")
    assert done.returncode == 2
    assert "invalid choice: 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [("--quick",), ("stores", "--help")], ids=["orders", "suite"])
def test_an_installed_catgad_says_benchmarks_need_a_checkout(
    argv: tuple[str, ...], tmp_path: Path
) -> None:
    # catgad as a wheel installs it: the package alone, no bench/ beside it
    shutil.copytree(ROOT / "catgad", tmp_path / "catgad")
    done = subprocess.run(
        [sys.executable, "-m", "catgad.cli.main", "bench", *argv],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "catgad bench: benchmarks run from a source checkout of catgad (its bench/ directory"
        f" beside catgad/); this catgad, at {tmp_path / 'catgad'}, is installed without one"
    ]
