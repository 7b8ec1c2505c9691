"""`catgad migrate` on SQLite (the CLI, killed and resumed) and on the memory store (in-process).

Events are written by the version-1 config; the config then moves to version
3. A dry run changes nothing (byte for byte) and reports the counts; a real
run upcasts everything; an interrupted run (--limit, SIGINT, kill -9) loses
nothing and the next run finishes; and every aggregate's state is the same
before the migration (upcast on read) and after it (no upcasting left to do).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from catgad.app.load import load_config
from catgad.engine.commands import CommandEngine
from catgad.envelope import Envelope
from catgad.errors import NotRewritable
from catgad.evolution.migrate import migrate
from catgad.evolution.upcast import Upcasters
from catgad.handlers.registry import load_plugins
from catgad.model import Config
from catgad.store.memory import MemoryStore
from catgad.store.protocol import AppendResult, EventStore
from catgad.store.sqlite import SQLiteStore
from tests.evolution.configs import write
from tests.helpers.daemon import run_cli

pytestmark = pytest.mark.sqlite


def registered(i: int) -> Envelope:
    data = {"customer_id": f"c{i}", "customer": f"Ada{i} Lovelace", "mail": f"ada{i}@example.com"}
    return Envelope(type="CustomerRegistered", data=data, dataschemaversion=1)


def moved(i: int, n: int) -> Envelope:
    data = {"customer_id": f"c{i}", "town": f"Town{n}", "zip": f"{n:05d}"}
    return Envelope(type="CustomerMoved", data=data, dataschemaversion=1)


async def seed(store: EventStore, customers: int, moves: int) -> int:
    """Version-1 events, as the version-1 service wrote them; returns how many."""

    async def one(i: int) -> AppendResult:
        events = [registered(i), *(moved(i, n) for n in range(moves))]
        return await store.append(f"Customer-c{i}", events, expected_version=0, command_id=f"k{i}")

    for start in range(0, customers, 250):  # concurrent appends share a commit
        await asyncio.gather(*(one(i) for i in range(start, min(start + 250, customers))))
    return customers * (1 + moves)


async def seed_through_the_v1_service(config: Config, store: EventStore) -> None:
    """A few customers written by the version-1 commands themselves."""
    engine = CommandEngine(config, store)
    for i in range(5):
        await engine.execute(
            "Register", {"customer_id": f"s{i}", "customer": "Grace Hopper", "mail": "g@h"}
        )
        await engine.execute("Move", {"customer_id": f"s{i}", "town": "Arlington"})


async def view(
    config: Config, store: EventStore, ids: Sequence[str]
) -> tuple[list[Any], dict[str, Any]]:
    """Every event (at the newest version: upcast on read where needed) and each state."""
    upcasting = Upcasters(config, load_plugins(config)).wrap(store)
    events: list[Any] = []
    after = 0
    while page := await upcasting.read_all(after=after, limit=1000):
        events.extend(
            (e.position, e.subject, e.streamversion, e.id, e.type, e.dataschemaversion, e.data)
            for e in page
        )
        after = page[-1].position or 0
    engine = CommandEngine(config, upcasting)
    states = {}
    for customer in ids:
        _, loaded = await engine.aggregate_state("Customer", customer)
        states[customer] = (loaded.version, loaded.state)
    return events, states


def raw_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM events ORDER BY position").fetchall()


def digest(db: Path) -> str:
    return hashlib.sha256(repr(raw_rows(db)).encode()).hexdigest()


def versions(db: Path) -> dict[tuple[str, int], int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT type, json_extract(body, '$.dataschemaversion'), count(*)"
            " FROM events GROUP BY 1, 2"
        ).fetchall()
    return {(t, v): n for t, v, n in rows}


class Service:
    """The customer service's two configs over one SQLite file."""

    def __init__(self, tmp_path: Path) -> None:
        self.v1_path = write(tmp_path, 1)
        self.v3_path = write(tmp_path, 3)
        self.db = tmp_path / "customers.db"
        self.v1 = load_config(self.v1_path, env={})
        self.v3 = load_config(self.v3_path, env={})

    def run(self, coro_fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            store = SQLiteStore(self.db, synchronous="normal")
            await store.open()
            try:
                return await coro_fn(store, *args)
            finally:
                await store.close()

        return asyncio.run(go())

    def migrate(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("migrate", str(self.v3_path), *args, timeout=300)


@pytest.fixture
def service(tmp_path: Path) -> Service:
    s = Service(tmp_path)
    s.run(seed, 30, 2)
    s.run(lambda store: seed_through_the_v1_service(s.v1, store))
    return s


IDS = [f"c{i}" for i in range(30)] + [f"s{i}" for i in range(5)]


def test_dry_run_changes_nothing_and_reports_counts(service: Service) -> None:
    before = digest(service.db)
    done = service.migrate("--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "dry run: nothing was written"
    assert "to upcast:   100" in out
    assert "  CustomerMoved 1 -> 2: 65" in out and "  CustomerRegistered 1 -> 3: 35" in out
    assert "current:     0" in out and "failed:      0" in out
    assert "events scanned" in done.stderr  # progress on stderr
    assert digest(service.db) == before


def test_migrate_upcasts_everything_and_states_stay(service: Service) -> None:
    events_before, states_before = service.run(lambda st: view(service.v3, st, IDS))
    assert versions(service.db) == {("CustomerRegistered", 1): 35, ("CustomerMoved", 1): 65}
    done = service.migrate()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "migration done"
    assert "upcast:      100" in done.stdout.splitlines()
    assert versions(service.db) == {("CustomerRegistered", 3): 35, ("CustomerMoved", 2): 65}
    # read raw now (no upcaster has anything left to do): the same events, the same states
    events_after, states_after = service.run(lambda st: view(service.v3, st, IDS))
    assert events_after == events_before
    assert states_after == states_before
    assert states_after["c0"][1]["name"] == "Ada0 Lovelace" and states_after["c0"][0] == 3
    again = service.migrate()
    assert again.returncode == 0
    assert "upcast:      0" in again.stdout.splitlines()
    assert "current:     100" in again.stdout.splitlines()


def test_limit_stops_and_the_next_run_resumes(service: Service) -> None:
    _, states_before = service.run(lambda st: view(service.v3, st, IDS))
    first = service.migrate("--limit", "25", "--batch", "10")
    assert first.returncode == 0, first.stderr
    assert (
        first.stdout.splitlines()[0] == "stopped at --limit: run `catgad migrate` again to continue"
    )
    assert sum(n for (t, v), n in versions(service.db).items() if v > 1) == 25
    second = service.migrate("--batch", "10")
    assert second.returncode == 0
    assert "upcast:      75" in second.stdout.splitlines()
    assert "current:     25" in second.stdout.splitlines()
    assert service.run(lambda st: view(service.v3, st, IDS))[1] == states_before


def test_failed_upcasts_are_listed_and_left_as_they_are(service: Service) -> None:
    bad = Envelope(
        type="CustomerRegistered", data={"customer_id": "x", "customer": "X"}, dataschemaversion=1
    )
    service.run(lambda st: st.append("Customer-x", [bad], expected_version=0, command_id="bad"))
    done = service.migrate()
    assert done.returncode == 1
    assert "failed:      1" in done.stdout
    assert (
        f"  {bad.id} (CustomerRegistered in Customer-x): upcaster 1 -> 2 failed: set.vip"
        in done.stdout
    )
    assert versions(service.db)[("CustomerRegistered", 1)] == 1  # only the bad one is left


@pytest.fixture
def big(tmp_path: Path) -> Service:
    s = Service(tmp_path)
    s.run(seed, 2000, 9)  # 20,000 events
    return s


def _start(service: Service, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "catgad.cli.main", "migrate", str(service.v3_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_until_some_are_migrated(service: Service, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "migrate finished before it could be interrupted"
        migrated = sum(n for (t, v), n in versions(service.db).items() if v and v > 1)
        if migrated:
            return migrated
        time.sleep(0.01)
    raise AssertionError("migrate made no progress")


@pytest.mark.slow
def test_kill_9_mid_run_loses_nothing_and_a_new_run_finishes(big: Service) -> None:
    sample = [f"c{i}" for i in range(0, 2000, 97)]
    events_before, states_before = big.run(lambda st: view(big.v3, st, sample))
    proc = _start(big, "--batch", "5")
    _wait_until_some_are_migrated(big, proc)
    proc.kill()  # SIGKILL: no clean-up at all
    proc.wait(10)
    counts = versions(big.db)
    migrated = sum(n for (t, v), n in counts.items() if v > 1)
    assert 0 < migrated < 20_000, counts
    assert sum(counts.values()) == 20_000  # not one event lost
    with sqlite3.connect(big.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert big.run(lambda st: view(big.v3, st, sample)) == (events_before, states_before)
    done = big.migrate("--batch", "500")
    assert done.returncode == 0, done.stderr
    assert f"current:     {migrated:,}" in done.stdout.splitlines()
    assert versions(big.db) == {("CustomerRegistered", 3): 2000, ("CustomerMoved", 2): 18000}
    assert big.run(lambda st: view(big.v3, st, sample)) == (events_before, states_before)


@pytest.mark.slow
def test_sigint_stops_after_the_current_batch(big: Service) -> None:
    proc = _start(big, "--batch", "5")
    _wait_until_some_are_migrated(big, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out.splitlines()[0] == "interrupted: run `catgad migrate` again to resume"
    assert "Traceback" not in err
    upcast = int(
        next(line for line in out.splitlines() if line.startswith("upcast:"))
        .split()[-1]
        .replace(",", "")
    )
    assert sum(n for (t, v), n in versions(big.db).items() if v > 1) == upcast
    assert big.migrate().returncode == 0
    assert versions(big.db) == {("CustomerRegistered", 3): 2000, ("CustomerMoved", 2): 18000}


# -- the memory store, in-process ------------------------------------------------------------


async def test_memory_store_migrates_in_place(tmp_path: Path) -> None:
    v3 = load_config(write(tmp_path, 3, "memory"), env={})
    upcasters = Upcasters(v3, load_plugins(v3))
    store = MemoryStore()
    await store.open()
    await seed(store, 10, 3)
    ids = [f"c{i}" for i in range(10)]
    before = await view(v3, store, ids)
    raw = await store.read_all()
    dry = await migrate(store, v3, upcasters, dry_run=True)
    assert (dry.scanned, dry.upcast, dry.current) == (40, 40, 0)
    assert await store.read_all() == raw  # the dry run wrote nothing

    stop_after_one_page = iter([False, True])
    interrupted = await migrate(
        store, v3, upcasters, batch=15, should_stop=lambda: next(stop_after_one_page)
    )
    assert interrupted.stopped == "interrupted" and interrupted.upcast == 15
    resumed = await migrate(store, v3, upcasters, batch=15)
    assert (resumed.upcast, resumed.current, resumed.stopped) == (25, 15, None)
    assert sum(resumed.steps.values()) == 25
    assert set(resumed.steps) == {("CustomerRegistered", 1, 3), ("CustomerMoved", 1, 2)}
    assert all(e.dataschemaversion in (2, 3) for e in await store.read_all())
    assert await view(v3, store, ids) == before
    await store.close()


class _ReadOnly:
    """An EventStore without rewrite (a backend that has not got it yet)."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.name = "read-only"
        self.capabilities = inner.capabilities

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        return await self.inner.read_all(after=after, limit=limit)


async def test_a_store_that_cannot_rewrite_only_dry_runs(tmp_path: Path) -> None:
    v3 = load_config(write(tmp_path, 3, "memory"), env={})
    upcasters = Upcasters(v3, load_plugins(v3))
    inner = MemoryStore()
    await inner.open()
    await seed(inner, 2, 1)
    store: Any = _ReadOnly(inner)
    assert (await migrate(store, v3, upcasters, dry_run=True)).upcast == 4
    with pytest.raises(NotRewritable, match="the read-only store cannot rewrite events yet"):
        await migrate(store, v3, upcasters)
