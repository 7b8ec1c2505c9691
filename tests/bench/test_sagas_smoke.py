"""`catgad bench sagas`, tiny: the client and the saga run on every store and are reported.

Timing is not asserted (the machine is shared). The benchmark reads each run's
store back and stops on a wrong count; here the report must carry, for each
store, both systems with figures that hang together, the verified event
counts, the ratio and the profile section.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench.sagas import DECISIONS, EVENTS, WARM_UP, check
from bench.sagas_report import Run
from bench.workload import VerificationError
from catgad.cli.main import main

ORDERS = 12
NUMBER = r"[\d,]+(?:\.\d+)?"
STORES = ("sqlite-normal", "sqlite-full", "memory")


def _number(cell: str) -> float:
    return float(cell.split(" [")[0].replace(",", ""))


@pytest.mark.slow
@pytest.mark.sqlite
def test_tiny_run_reports_both_systems_on_every_store(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "RESULTS-sagas.md"
    args = ["--quick", "--orders", str(ORDERS), "--concurrency", "4", "--output", str(output)]
    assert main(["bench", "sagas", *args]) == 0
    err = capfd.readouterr().err
    for store in STORES:
        assert f"[{store}] repeat 1/1: saga:" in err  # progress names the store and the repeat

    text = output.read_text()
    assert f"`python -m bench.sagas {' '.join(args)}`" in text
    assert "| cores |" in text and "| Python |" in text and "| SQLite |" in text
    orders = ORDERS + WARM_UP  # every order of a run is read back, the warm-up's too
    for store in STORES:
        for system, events in (("client", 3), ("saga", 3 + len(DECISIONS))):
            (line,) = [x for x in text.splitlines() if x.startswith(f"| {store} | {system}:")]
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            per_s, cmds, p50, p99 = (_number(c) for c in cells[2:6])
            assert per_s > 0 and p50 > 0 and p50 <= p99, cells
            assert abs(cmds - 3 * per_s) <= 2, cells  # 3 commands an order (rounded figures)
            cpu_us, cores = _number(cells[6]), _number(cells[7])
            assert cpu_us > 0 and 0 < cores <= 2 * (os.cpu_count() or 1), cells
            assert cells[8] == f"{orders * events:,}", cells  # read back and checked
        (ratio,) = [x for x in text.splitlines() if x.startswith(f"| {store} | saga / client |")]
        assert re.search(rf"\| {NUMBER}x \| >= 0.5x \| (yes|no) \| {NUMBER}x \|$", ratio), ratio
        section = text.split(f"### {store}: {ORDERS} sagas")[1]
        calls = re.search(r"saga append ([\d.]+), read ([\d.]+).*client append ([\d.]+)", section)
        assert calls is not None, section[:300]
        assert float(calls[1]) >= 3.0 and float(calls[3]) == 3.0, calls[0]
        assert "catgad/sagas/runner.py" in section


def test_a_wrong_store_is_refused() -> None:
    ids = ["a", "b"]
    streams = {f"{agg}-{i}": [ev] for i in ids for agg, ev in EVENTS.items()}
    streams |= {f"Saga-Bench-{i}": list(DECISIONS) for i in ids}
    assert check(streams, ids, saga=True) == 2 * (3 + len(DECISIONS))
    streams["Saga-Bench-b"] = streams["Saga-Bench-b"][:-1]  # never completed
    with pytest.raises(VerificationError, match="Saga-Bench-b"):
        check(streams, ids, saga=True)
    with pytest.raises(VerificationError):  # a client run leaves no saga streams
        check({k: v for k, v in streams.items() if k.startswith("Saga")}, ids, saga=False)


def test_percentiles_are_nearest_rank() -> None:
    run = Run(4, seconds=2.0, cpu_seconds=1.0, latencies=[0.004, 0.001, 0.003, 0.002], stored=12)
    assert (run.per_s, run.cmds_per_s, run.cpu_us, run.cores) == (2.0, 6.0, 250_000.0, 0.5)
    assert (run.pct(50), run.pct(99), run.pct(100)) == (2.0, 4.0, 4.0)
