"""A crash between a decision's append and its index write is healed: a real process is
killed (SIGKILL) right after appending a decision and before the index says so, once where
the instance starts (the index has no row: only the log follower, resuming from its
checkpoint, can put it and its timer), once where its timer fired. A runner started
afterwards on the same SQLite file repairs the index; the timer fires once, the instance's
commands are sent once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.consumer.settings import LeasedSettings
from catgad.engine.commands import CommandEngine
from catgad.engine.routing import CommandRouter
from catgad.processes.runner import ProcessRunner
from catgad.processes.state import TIMER_FIRED, TIMER_SCHEDULED
from catgad.reactors.send import RouterSender
from catgad.store.process_index import process_index
from catgad.store.sqlite import SQLiteStore
from tests.helpers.daemon import REPO

FULFILMENT = REPO / "config" / "examples" / "fulfilment.yaml"
CHILD = "tests.processes.index_crash_child"  # run as a module from the checkout


def one_second_deadline(folder: Path) -> Path:
    text = FULFILMENT.read_text()
    old = "        after: {in: 24h, goto: expired}"
    assert old in text
    path = folder / "fulfilment.yaml"
    path.write_text(text.replace(old, "        after: {in: 1s, goto: expired}"))
    return path


@pytest.mark.parametrize("dies_at", ["awaiting_payment", "expired"])
def test_a_crash_between_a_decision_and_its_index_write_is_healed(
    tmp_path: Path, dies_at: str
) -> None:
    config_path, db = one_second_deadline(tmp_path), tmp_path / "events.db"
    child = subprocess.run(
        [sys.executable, "-m", CHILD, str(config_path), str(db), dies_at],
        capture_output=True,
        timeout=90,
        cwd=REPO,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    asyncio.run(healed(config_path, db, dies_at))


async def healed(config_path: Path, db: Path, dies_at: str) -> None:
    config = load_config(config_path, env={})
    store = SQLiteStore(db)
    await store.open()
    try:
        index = process_index(store)
        stream = await store.read("Process-Fulfilment-c1")
        before = [(r.instance, r.state) for r in await index.listing("Fulfilment")]
        if dies_at == "awaiting_payment":
            assert [e.type for e in stream].count(TIMER_SCHEDULED) == 1, "started"
            assert before == [], "killed before the index had a row"
        else:
            assert [e.type for e in stream].count(TIMER_FIRED) == 1, "fired before the kill"
            assert before == [("c1", "awaiting_payment")], "killed before the index write"

        engine = CommandEngine(config, store)
        router = CommandRouter(engine, None, service=config.service.name)
        runner = ProcessRunner(
            config,
            store,
            RouterSender(router, config.service.name),
            owner="after",
            settings=LeasedSettings(lease_ttl=1.0, poll_interval=0.05),
        )
        await runner.start()
        try:
            async with asyncio.timeout(30):
                state = await runner.settled("Fulfilment", "c1", "expired")
                while True:  # the row follows the stream: expired, nothing left due
                    rows = await index.listing("Fulfilment")
                    if [(r.instance, r.state, r.due) for r in rows] == [("c1", "expired", None)]:
                        break
                    await asyncio.sleep(0.05)
            assert rows[0].version == state.version
        finally:
            await runner.stop()
        stream = await store.read("Process-Fulfilment-c1")
        assert [e.type for e in stream].count(TIMER_FIRED) == 1, "fired once"
        cancelled = [e for e in await store.read("Order-c1") if e.type == "OrderCancelled"]
        assert len(cancelled) == 1, "the command announced before the kill is sent once"
        assert await index.due("Fulfilment", time.time() + 3600, 10) == []
    finally:
        await store.close()
