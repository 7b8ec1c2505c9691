"""`python -m bench.stores --quick`, on the test servers: every store is measured and reported.

Timing is not asserted (the machine is shared). The benchmark counts what each
run stored and stops on a wrong count; here the report must carry, for every
store, a raw row and a catgad row with figures and the verified event count.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.store_common import Miscount, Run
from bench.stores import main
from tests.servers import nats as nats_servers
from tests.servers import postgres as postgres_servers
from tests.servers import redis as redis_servers

REPO = Path(__file__).resolve().parents[2]
QUICK_EVENTS = 50 * 4  # bench.stores.QUICK: aggregates x appends
NUMBER = r"[\d,]+(?:\.\d+)?"


def _row(section: str, system: str) -> list[str]:
    (line,) = [x for x in section.splitlines() if x.startswith(f"| {system} |")]
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.nats
def test_quick_run_reports_every_store_with_figures(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CATGAD_REDIS_URL": redis_servers.server_url(),
        "CATGAD_POSTGRES_URL": postgres_servers.server_url(),
        "CATGAD_NATS_URL": nats_servers.server_url("2.9"),
    }
    stores = ["redis", "postgres", "nats"]
    if nats_servers.wheel_binary() is not None:
        stores.append("nats-current")  # starts and stops its own private server
    output = tmp_path / "RESULTS-stores.md"
    args = ["--quick", "--stores", ",".join(stores), "--output", str(output)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.stores", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for store in stores:
        assert f"[{store}] repeat 1/1" in done.stderr  # progress names the store and repeat

    text = output.read_text()
    assert f"`python -m bench.stores {' '.join(args)}`" in text
    assert "cores" in text and "Python" in text and "load average" in text
    summary, *sections = text.split("\n## ")[1:]
    assert summary.startswith("Summary")
    for store in stores:
        cells = _row(summary, store)
        assert re.fullmatch(NUMBER, cells[2]) and re.fullmatch(NUMBER, cells[3]), cells
        assert re.fullmatch(rf"{NUMBER}x", cells[4]) and cells[6] in ("yes", "no"), cells
        (section,) = [s for s in sections if s.splitlines()[0].endswith(f"(`{store}`)")]
        raw, ours = section.split("| system |")[1].splitlines()[2:4]
        for line in (raw, ours):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert all(re.fullmatch(NUMBER, c) for c in cells[1:4]), cells  # rate, p50, p99
            assert cells[4] == f"{QUICK_EVENTS:,}", cells  # every run's count was verified
        assert "What the raw baseline does not do:" in section
    if "nats-current" in stores:
        assert "nats-current: nats-server" in text


def test_an_unknown_store_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--stores", "redis,mongodb", "--output", "-"]) == 2
    assert "mongodb" in capsys.readouterr().err


def test_a_miscount_is_refused_and_percentiles_are_nearest_rank() -> None:
    run = Run(appends=4, seconds=2.0, latencies=[0.004, 0.001, 0.003, 0.002])
    assert run.rate == 2.0
    assert (run.pct(50), run.pct(99), run.pct(100)) == (2.0, 4.0, 4.0)
    with pytest.raises(Miscount, match="raw stored 3 events, expected 4"):
        run.verified("raw", 3)
    assert run.verified("raw", 4).stored == 4
