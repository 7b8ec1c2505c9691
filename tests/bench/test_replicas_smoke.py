"""`python -m bench.replicas --quick`, tiny, on the test servers: every setup runs and is reported.

Timing is not asserted (the machine is shared). The benchmark reads each run's
store back and stops on a wrong count; here the report must carry every row.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import nats as nats_servers
from tests.servers import redis as redis_servers

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.nats]

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_reports_every_setup(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CATGAD_REDIS_URL": redis_servers.server_url(),
        "CATGAD_NATS_URL": nats_servers.server_url("2.9"),
    }
    output = tmp_path / "RESULTS-replicas.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.replicas", "--quick", "--orders", "8", "--output", output],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    for replicas in ("1 replica,", "2 replicas,"):
        for route in ("local", "routed"):
            assert f"| {replicas} {route}" in text
    assert "## Where it stops scaling, and why" in text


def test_the_analysis_of_runs_too_short_for_the_cpu_clock_says_so() -> None:
    """A quick run's CPU can read as 0 ticks: the words say so rather than divide by it."""
    from bench.replicas_report import PROCESSES, Row, Setup, why

    def row(replicas: int, route: str, partitions: int, cpu_ms: float) -> Row:
        cpu = dict.fromkeys(PROCESSES, cpu_ms)
        return Row(Setup(replicas, route, partitions), [1000.0], 1.0, 2.0, cpu, 1.0, 1.0)

    setups = (("local", 8), ("auto", 8), ("auto", 32))
    table = [row(n, route, parts, 0.0 if route == "local" else 0.5)
             for n in (1, 2) for route, parts in setups]  # fmt: skip
    text = "\n".join(why(table, 2))
    assert "unmeasured share (runs too short)" in text
    assert "unmeasured multiple of (runs too short)" in text
