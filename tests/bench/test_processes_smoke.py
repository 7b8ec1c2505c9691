"""`catgad bench processes`, tiny: every workload runs on both default stores and is reported
(the resume workload at --quick's 2,000 waiting instances).

Timing is not asserted beyond what must hold on any machine (the machine is
shared). The benchmark reads each run's store back and stops on a wrong count;
here the report must carry, for each store, every workload with figures that
hang together (the verified event counts, the steady schedule's rate, lateness
percentiles in order), the aim's verdict and the profile section.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bench.processes import (
    DONE,
    DONE_EVENTS,
    EXPIRED,
    EXPIRED_EVENTS,
    WARM_UP,
    BenchClock,
    check,
    expected_streams,
    timer_times,
)
from bench.processes_report import TimersRun, pct
from bench.workload import VerificationError
from catgad.cli.main import main

INSTANCES = 100
RATE = 1000
STEP = 0.05  # the default --step: 50 instances start together, then the next 50 ms later
STORES = ("sqlite-normal", "memory")
DONE_STORED = len(DONE) + sum(len(v) for v in DONE_EVENTS.values())  # 8 decisions + 3 events
EXPIRED_STORED = len(EXPIRED) + sum(len(v) for v in EXPIRED_EVENTS.values())  # 7 + 2


def _cells(text: str, heading: str, store: str) -> list[str]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    (line,) = [x for x in section.splitlines() if x.startswith(f"| {store} |")]
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _calls(table: str, method: str) -> str:
    """The calls per timer (or instance) of a stopwatch table's row for `method`."""
    (row,) = [x for x in table.splitlines() if x.startswith(f"| `ProcessRunner.{method}`")]
    return row.split("|")[2].strip()


def _number(cell: str) -> float:
    return float(cell.split(" [")[0].replace(",", ""))


@pytest.mark.slow
@pytest.mark.sqlite
def test_tiny_run_reports_every_workload_on_both_stores(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "RESULTS-processes.md"
    args = ["--quick", "--instances", str(INSTANCES), "--concurrency", "8"]
    args += ["--rate", str(RATE), "--output", str(output)]
    assert main(["bench", "processes", *args]) == 0
    err = capfd.readouterr().err
    for store in STORES:
        for workload in ("transitions", "burst", "steady", "resume"):
            assert f"[{store}] repeat 1/1: {workload}:" in err  # progress: store, repeat

    text = output.read_text()
    assert f"`python -m bench.processes {' '.join(args)}`" in text
    assert "| cores |" in text and "| Python |" in text and "| SQLite |" in text
    for store in STORES:
        cells = _cells(text, "## Transitions driven by events", store)
        instances, starts, per_s, p50, p99 = (_number(c) for c in cells[1:6])
        assert instances == INSTANCES and starts > 0 and per_s > 0, cells
        assert 0 < p50 <= p99, cells
        assert cells[6] == f"{(WARM_UP + INSTANCES) * DONE_STORED:,}", cells  # read back

        expired = f"{WARM_UP * DONE_STORED + INSTANCES * EXPIRED_STORED:,}"
        cells = _cells(text, "timers falling due at once", store)
        assert _number(cells[1]) == INSTANCES and cells[2] == "all at once", cells
        fired, drain, late50, late99, late_max = (_number(c) for c in cells[3:8])
        assert fired > 0 and 0 <= late50 <= late99 <= late_max, cells
        assert abs(drain - late_max) < 0.01, cells  # all due at once: the last fired is the latest
        # fired/s = timers / that time (shown to 2 decimals)
        assert INSTANCES / (drain + 0.006) <= fired <= INSTANCES / max(drain - 0.006, 0.001), cells
        assert cells[8] == expired, cells

        cells = _cells(text, "(the aim)", store)
        due, fired = _number(cells[2]), _number(cells[3])
        assert abs(due - RATE) <= 0.02 * RATE, cells  # the schedule asked for RATE per second
        # none fires before it is due: the last no sooner than the last group's deadline
        last_due = (INSTANCES - RATE * STEP) / RATE
        assert 0 < fired <= 1.02 * INSTANCES / last_due, cells
        late50, late99, late_max = (_number(c) for c in cells[5:8])
        assert 0 <= late50 <= late99 <= late_max, cells
        assert cells[8] == expired, cells
        assert cells[9] == ("met" if late99 < 1.0 else "missed"), cells

        cells = _cells(text, "instances waiting", store)
        waiting, due, query_ms, _, ready, fired, delivered, events, log_read = (
            _number(c) for c in cells[1:10]
        )
        assert (waiting, due) == (2000, 100), cells  # --quick's
        assert query_ms > 0 and 0 < ready and 0 < fired <= delivered, cells
        # the log as the new runner found it: each instance's Started and TimerScheduled,
        # and the order of each due one
        assert events == 2 * waiting + 3 * due and log_read > 0, cells

        section = text.split(f"### {store}: {INSTANCES} timers falling due at once")[1]
        section = section.split("\n### ", 1)[0]
        timers, rest = section.split("cProfile run", 1)
        profiled, driven = rest.split("Stopwatch, driven", 1)
        assert _calls(timers, "_fire") == "1.0"  # one `_fire` per timer
        assert _calls(timers, "_commit") == "2.0"  # fired, then delivered
        assert "catgad/processes/runner.py" in profiled
        assert _calls(driven, "_decide_event") == "2.0"  # PaymentCaptured, ShipmentBooked
        assert _calls(driven, "_commit") == "3.0"  # transition, delivered, transition


def test_a_wrong_store_is_refused() -> None:
    done, expired = ["a"], ["b", "c"]
    streams = expected_streams(done, expired)
    assert check(streams, done, expired) == DONE_STORED + 2 * EXPIRED_STORED
    twice = dict(streams)
    twice["Process-Fulfilment-c"] = [*EXPIRED[:3], *EXPIRED[2:]]  # TimerFired twice
    with pytest.raises(VerificationError, match="Process-Fulfilment-c"):
        check(twice, done, expired)
    cancelled = {**streams, "Order-b": ["OrderPlaced", "OrderCancelled", "OrderCancelled"]}
    with pytest.raises(VerificationError, match="Order-b"):
        check(cancelled, done, expired)
    with pytest.raises(VerificationError, match="Shipment-b"):  # nothing else may be stored
        check({**streams, "Shipment-b": ["ShipmentBooked"]}, done, expired)


def test_a_timer_fired_early_is_refused() -> None:
    fired = {"Process-Fulfilment-a": {"due": 10.0, "at": 10.5}}
    assert timer_times(fired, ["a"]) == ([10.0], [10.5])
    with pytest.raises(VerificationError, match="before it was due"):
        timer_times({"Process-Fulfilment-a": {"due": 10.0, "at": 9.9}}, ["a"])


def test_figures_of_a_timer_run() -> None:
    assert (pct([4.0, 1.0, 3.0, 2.0], 50), pct([4.0, 1.0, 3.0, 2.0], 99)) == (2.0, 4.0)
    # four timers due 0.5 s apart in two steps, each fired 0.1 s late
    run = TimersRun(4, [0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.6, 0.6], stored=1, place_seconds=1.0)
    assert run.due_per_s == 4.0  # 2 due before the last moment, over 0.5 s
    assert run.drain == pytest.approx(0.6) and run.per_s == pytest.approx(4 / 0.6)
    assert run.late(99) == pytest.approx(0.1)


async def test_the_clock_held_and_run_on() -> None:
    clock = BenchClock()
    assert abs(clock.now() - time.time()) < 0.01  # the system clock until held
    held = clock.hold(1_000.0)
    assert clock.now() == held == 1_000.0
    wake = asyncio.Event()
    waiting = asyncio.create_task(clock.wait(wake, 1_000.05))  # not while held
    await asyncio.sleep(0.1)
    assert not waiting.done()
    clock.resume()  # runs on from 1,000 at the real rate: woken, then due 50 ms later
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(clock.wait(wake, 1_000.05), 1)
    assert 1_000.05 <= clock.now() < 1_000.5
