"""The README's curl session, run against a real daemon: the docs cannot drift."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.daemon import ORDERS_YAML, Daemon

README = Path(__file__).parents[1] / "README.md"


def console_session() -> list[tuple[str, str]]:
    """(command, expected output) pairs from the README's ```console block."""
    text = README.read_text()
    block = text.split("```console\n", 1)[1].split("```", 1)[0]
    pairs: list[tuple[str, str]] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            i += 1
            continue
        command = line[2:]
        while command.rstrip().endswith("\\"):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        command = re.sub(r"\s+#.*$", "", command)  # a trailing comment is prose
        i += 1
        expected = lines[i] if i < len(lines) else ""
        pairs.append((command, expected))
        i += 1
    return pairs


def as_pattern(expected: str) -> re.Pattern[str]:
    """`…` in the README stands for run-specific text (ids, times, elided events)."""
    return re.compile(".*?".join(re.escape(part) for part in expected.split("…")), re.DOTALL)


def test_readme_session_is_what_the_daemon_answers(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to replay the README session")
    pairs = console_session()
    assert len(pairs) >= 8, "the README's session went missing"
    with Daemon(ORDERS_YAML, tmp_path) as daemon:
        address = f"{daemon.host}:{daemon.port}"
        for command, expected in pairs:
            assert command.startswith("curl "), command
            done = subprocess.run(
                command.replace("localhost:8080", address),
                shell=True,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert done.returncode == 0, (command, done.stderr)
            assert as_pattern(expected).fullmatch(done.stdout.strip()), (
                f"README says:\n{expected}\nthe daemon says:\n{done.stdout}"
            )
