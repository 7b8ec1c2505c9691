"""`python -m bench.bus_relay`, tiny, on the test servers: every row of both brokers is reported.

Timing is not asserted (the machine is shared); each row needs its raw baseline
and its catgad figure from the same run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import kafka as kafka_servers
from tests.servers import nats as nats_servers

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.kafka]

REPO = Path(__file__).resolve().parents[2]
ROWS = ("publish, one at a time", "publish, 256 in flight", "consume + ack", "store -> consumer")


def test_tiny_run_reports_every_row_for_both_brokers(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS-bus.md"
    args = ["--messages", "40", "--repeat", "1", "--output", str(output)]
    args += ["--nats", nats_servers.server_url("2.9"), "--kafka", kafka_servers.broker_url()]
    done = subprocess.run(
        [sys.executable, "-m", "bench.bus_relay", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    assert "python -m bench.bus_relay --messages 40" in text
    sections = text.split("\n## ")
    for broker in ("NATS JetStream", "Kafka (aiokafka)"):
        (section,) = [s for s in sections if s.startswith(broker)]
        for row in ROWS:
            (line,) = [x for x in section.splitlines() if x.startswith(f"| {row}")]
            assert line.count("|") == 5 and line.rstrip().endswith("x |"), line
