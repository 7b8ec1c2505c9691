"""The README's read-model section: its session runs against a real daemon, its YAML loads."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.projections.section import PROJECTIONS
from tests.helpers.daemon import ORDERS_YAML, Daemon

README = Path(__file__).parents[2] / "README.md"
SECTION = README.read_text().split("## Read models (projections)", 1)[1].split("\n## ", 1)[0]


def session() -> list[tuple[str, str]]:
    block = SECTION.split("```console\n", 1)[1].split("```", 1)[0]
    pairs: list[tuple[str, str]] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        while command.rstrip().endswith("\\"):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        pairs.append((command, lines[i + 1]))
        i += 2
    return pairs


def pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(p) for p in expected.split("…")), re.DOTALL)


def test_the_session_is_what_the_daemon_answers(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to replay the README session")
    pairs = session()
    assert len(pairs) >= 6
    with Daemon(ORDERS_YAML, tmp_path, env={"CATGAD_REDIS_PROJECTIONS": "false"}) as daemon:
        address = f"{daemon.host}:{daemon.port}"
        for command, expected in pairs:
            deadline = time.monotonic() + 5  # a read model follows its events within moments
            while True:
                done = subprocess.run(
                    command.replace("localhost:8080", address),
                    shell=True, capture_output=True, text=True, timeout=30, check=False,
                )  # fmt: skip
                if pattern(expected).fullmatch(done.stdout.strip()):
                    break
                assert time.monotonic() < deadline, f"{command}\n{done.stdout}\n!= {expected}"
                time.sleep(0.05)


def test_the_yaml_example_loads(tmp_path: Path) -> None:
    block = SECTION.split("```yaml\n", 1)[1].split("```", 1)[0]
    text = ORDERS_YAML.read_text()
    before, rest = text.split("\nprojections:\n", 1)
    after = rest[rest.index("\nhandlers:\n") :]
    (tmp_path / "service.yaml").write_text(before + "\n" + block + after)
    # the example's read-model scenarios check its own projections, not the README's
    scenarios = (ORDERS_YAML.parent / "orders.tests.yaml").read_text()
    (tmp_path / "orders.tests.yaml").write_text(scenarios.split("\n  # Read models:", 1)[0])
    config = load_config(tmp_path / "service.yaml", env={})
    assert set(PROJECTIONS.of(config)) == {"orders", "notify"}
