"""`catgad bench --quick` end to end, tiny: every system runs, and its store is read back here.

Timing is not asserted (the machine is shared); what is asserted is that each
workload left exactly the expected events, counted independently of the
benchmark's own check, and that the results file carries the figures.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from catgad.cli.main import main
from catgad.store.sqlite import SQLiteStore

pytestmark = [pytest.mark.slow, pytest.mark.sqlite]

AGGREGATES = 6
EXPECTED = AGGREGATES * 3  # CreateOrder, PayOrder, ShipOrder: one event each


def _count(db: Path, query: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(query).fetchone()[0])
    finally:
        conn.close()


def _catgad_streams(db: Path) -> dict[str, list[tuple[int, str]]]:
    """Every stream of a catgad store, read back through the store itself."""

    async def read() -> dict[str, list[tuple[int, str]]]:
        store = SQLiteStore(db)
        await store.open()
        try:
            events = await store.read_all(after=0, limit=10_000)
        finally:
            await store.close()
        out: dict[str, list[tuple[int, str]]] = {}
        for e in events:
            assert e.subject is not None and e.streamversion is not None
            out.setdefault(e.subject, []).append((e.streamversion, e.type))
        return out

    return asyncio.run(read())


def test_quick_bench_runs_every_system_and_stores_exactly_the_workload(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    workdir = tmp_path / "work"
    code = main(
        [
            "bench",
            "--quick",
            "--aggregates",
            str(AGGREGATES),
            "--concurrency",
            "4",
            "--synchronous",
            "normal",
            "--output",
            str(output),
            "--workdir",
            str(workdir),
        ]
    )
    assert code == 0

    dirs = sorted(p for p in (workdir / "rep1" / "normal").iterdir())
    by_kind: dict[str, list[Path]] = {}
    for d in dirs:
        by_kind.setdefault(d.name.split("-", 1)[1], []).append(d)
    assert set(by_kind) == {"raw-sqlite3", "eventsourcing", "catgad-engine", "catgad-http"}

    for d in by_kind["raw-sqlite3"]:  # tx per batch and tx per event
        assert _count(d / "raw.db", "SELECT COUNT(*) FROM events") == EXPECTED
        assert _count(d / "raw.db", "SELECT COUNT(DISTINCT stream) FROM events") == AGGREGATES
    for d in by_kind["eventsourcing"]:  # cached and uncached repository
        assert _count(d / "es.db", "SELECT COUNT(*) FROM stored_events") == EXPECTED
        assert _count(d / "es.db", "SELECT MAX(originator_version) FROM stored_events") == 3

    want = [(1, "OrderCreated"), (2, "OrderPaid"), (3, "OrderShipped")]
    catgad_runs = [(d, "catgad-engine.db") for d in by_kind["catgad-engine"]]
    catgad_runs += [(d, "catgad-http.db") for d in by_kind["catgad-http"]]  # httpx, raw client
    assert len(catgad_runs) == 3
    for d, name in catgad_runs:
        streams = _catgad_streams(d / name)
        assert len(streams) == AGGREGATES
        assert all(events == want for events in streams.values()), streams
        assert (d / "config" / "orders.yaml").read_text().count("synchronous: normal") == 1

    text = output.read_text()
    assert "catgad bench --aggregates 6 --concurrency 4 --synchronous normal --repeat 1" in text
    for system in ("raw sqlite3", "eventsourcing", "catgad engine", "catgad http"):
        assert f"| normal | {system} |" in text
    assert text.count(f"| {EXPECTED} |") == 7  # each measured row's verified event count
    assert "| normal | engine / eventsourcing (faster variant) |" in text
    assert "| normal | http (raw client) / raw sqlite3 (tx per batch) |" in text
    assert "SQLite" in text and "Python" in text and "cores" in text


def test_bench_refuses_an_unknown_system(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "engine,mongodb", "--output", "-"]) == 2
    assert "mongodb" in capsys.readouterr().err
