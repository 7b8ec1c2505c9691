"""The README's curl session, run against a real daemon: the docs cannot drift."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import ORDERS_YAML, REPO, Daemon

README = Path(__file__).parents[1] / "README.md"
SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"


def console_session(section: str = "") -> list[tuple[str, str]]:
    """(command, expected output) pairs from the first ```console block after the heading
    `section` (by default: of the README)."""
    text = README.read_text()
    if section:
        text = text.split(f"\n{section}\n", 1)[1]
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


def replay_session(pairs: list[tuple[str, str]], daemon: Daemon, *, settle: float = 0) -> None:
    """Run each curl against `daemon` and compare with the README's answer. With `settle`,
    a GET is asked again for up to that many seconds until it answers so (a saga moves on
    after the request that started it)."""
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to replay the README session")
    address = f"{daemon.host}:{daemon.port}"
    for command, expected in pairs:
        assert command.startswith("curl "), command
        deadline = time.monotonic() + (settle if "XPOST" not in command else 0)
        while True:
            done = subprocess.run(
                command.replace("localhost:8080", address),
                shell=True,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert done.returncode == 0, (command, done.stderr)
            if as_pattern(expected).fullmatch(done.stdout.strip()):
                break
            assert time.monotonic() < deadline, (
                f"README says:\n{expected}\nthe daemon says:\n{done.stdout}"
            )
            time.sleep(0.1)


def test_readme_session_is_what_the_daemon_answers(tmp_path: Path) -> None:
    pairs = console_session()
    assert len(pairs) >= 8, "the README's session went missing"
    with Daemon(ORDERS_YAML, tmp_path) as daemon:
        replay_session(pairs, daemon)


def test_readme_saga_session_is_what_the_daemon_answers(tmp_path: Path) -> None:
    """The Sagas section's session, on the order saga example and its payments webhook."""
    from tests.handlers.servers import WebhookServer

    pairs = console_session("## Sagas")
    assert len(pairs) >= 5, "the README's saga session went missing"
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with WebhookServer.python_example(secret) as payments:
        env = {"PAYMENTS_WEBHOOK_URL": payments.url("/payment"), "ORDERS_WEBHOOK_SECRET": secret}
        with Daemon(SAGA_YAML, tmp_path, env=env) as daemon:
            replay_session(pairs, daemon, settle=10)


def test_readme_process_session_is_what_the_daemon_answers(tmp_path: Path) -> None:
    """The Processes section's session: an approval on the fulfilment example."""
    pairs = console_session("## Processes")
    assert len(pairs) >= 5, "the README's process session went missing"
    with Daemon(REPO / "config" / "examples" / "fulfilment.yaml", tmp_path) as daemon:
        replay_session(pairs, daemon, settle=10)
