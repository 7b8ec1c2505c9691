"""`python -m bench.http_wrk` (catgad bench http): every system runs and is reported, and a
machine without wrk is told so. Timing is not asserted (the machine is shared); the
benchmark itself stops on an answer other than 2xx or an acknowledged order not stored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import redis as redis_servers
from tests.support.ci import needed

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]


def test_without_wrk_the_suite_says_so_and_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.http_wrk", "--quick", "--output", "-"],
        cwd=REPO, env={**os.environ, "PATH": str(tmp_path)}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "wrk is not installed" in done.stderr
    assert "Traceback" not in done.stderr


def test_quick_run_reports_every_system(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        needed("wrk", "the Debian package wrk drives the HTTP benchmark")
    output = tmp_path / "RESULTS-http.md"
    env = {**os.environ, "CATGAD_REDIS_URL": redis_servers.server_url()}
    done = subprocess.run(
        [sys.executable, "-m", "bench.http_wrk", "--quick", "--workers", "2", "--output", output],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    for row in ("| bare Starlette endpoint |", "| eventsourcing peer", "| catgad, 1 worker |",
                "| catgad, 2 workers (all cores) |"):  # fmt: skip
        assert row in text, text
    for ratio in ("1 worker / bare endpoint", "1 worker / eventsourcing peer", "2 workers / 1"):
        assert ratio in text, text
