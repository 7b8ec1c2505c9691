"""`catgad validate`: exit 0 with a summary, 1 with every issue, 2 on misuse; no tracebacks."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from catgad.cli import validate
from catgad.errors import ConfigError
from tests.helpers.daemon import run_cli

ROOT = Path(__file__).resolve().parents[2]
ORDERS = ROOT / "config" / "examples" / "orders.yaml"
CASES = Path(__file__).parent / "cases"


def catgad(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd)


def test_run_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert validate.run(argparse.Namespace(config=str(ORDERS))) == 0
    assert capsys.readouterr().out == (
        f"OK: {ORDERS}: 1 aggregates, 6 commands, 6 events, 19 tests\n"
    )


def test_run_leaves_config_errors_to_main() -> None:
    with pytest.raises(ConfigError):
        validate.run(argparse.Namespace(config=str(CASES / "07-unknown-aggregate.yaml")))


def test_parser_has_help_and_requires_config() -> None:
    parser = argparse.ArgumentParser(prog="catgad")
    validate.add_parser(parser.add_subparsers(dest="verb"))
    assert parser.parse_args(["validate", "x.yaml"]).config == "x.yaml"
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["validate"])
    assert exited.value.code == 2


def test_exit_0_on_a_valid_config() -> None:
    done = catgad("validate", "config/examples/orders.yaml")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout
        == "OK: config/examples/orders.yaml: 1 aggregates, 6 commands, 6 events, 19 tests\n"
    )


def test_exit_1_with_every_issue() -> None:
    done = catgad("validate", "22-several-errors.yaml", cwd=CASES)
    assert done.returncode == 1
    expected = (CASES / "22-several-errors.expected").read_text(encoding="utf-8")
    assert done.stderr == expected + f"{len(expected.splitlines())} error(s)\n"
    assert done.stdout == ""


@pytest.mark.parametrize(
    "case", ["01-yaml-syntax-error.yaml", "18-include-missing.yaml", "no-such-file.yaml"]
)
def test_no_traceback_reaches_the_user(case: str) -> None:
    done = catgad("validate", case, cwd=CASES)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr


def test_exit_2_on_usage_errors() -> None:
    assert catgad("validate").returncode == 2
    assert catgad("validate", "a.yaml", "b.yaml").returncode == 2


def test_help() -> None:
    done = catgad("validate", "--help")
    assert done.returncode == 0
    assert "CONFIG" in done.stdout and "file:line:col" in done.stdout
