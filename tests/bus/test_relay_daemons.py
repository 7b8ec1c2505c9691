"""Two `catgad run` daemons on one SQLite file: one relays; kill -9 it and the other takes over.

With the memory bus the subscribers live inside each daemon, so what the test
can see from outside is the relay's state in /readyz, and the lease and the
checkpoint in the SQLite file: the owner names the process (host:pid:random),
and the checkpoint must reach the last stored position, first under the
first daemon, then under the second, with no event appended to either left
behind.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.helpers.api import create_order
from tests.helpers.daemon import Daemon, edited_example
from tests.support.waiting import eventually

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]

LEASE = "relay:orders"
TTL = 1.5  # the dead holder's lease lapses after this; the standby retries every TTL/3
RELAY_OPTIONS = f"""bus:
  kind: memory
  options:
    relay: {{lease_ttl: {TTL}, poll_interval: 0.1}}
"""


def config_with_short_lease(tmp_path: Path) -> Path:
    """The orders example (and what it includes) copied, with a relay lease of TTL seconds."""
    return edited_example(tmp_path / "config", {"\nbus: memory\n": "\n" + RELAY_OPTIONS})


def relay_state(daemon: Daemon) -> str | None:
    try:
        resp = httpx.get(f"{daemon.url}/readyz", timeout=2)
    except httpx.TransportError:
        return None
    state: str | None = resp.json().get("checks", {}).get("relay")
    return state


def in_file(db: Path) -> tuple[str | None, int, int]:
    """(lease owner if unexpired, checkpoint, last position), read from the file itself."""
    with sqlite3.connect(db) as raw:
        owner = raw.execute(
            "SELECT owner FROM leases WHERE name = ?"
            " AND expires > (julianday('now') - 2440587.5) * 86400.0",
            (LEASE,),
        ).fetchone()
        checkpoint = raw.execute(
            "SELECT position FROM checkpoints WHERE name = ?", (LEASE,)
        ).fetchone()
        (head,) = raw.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
    return (owner[0] if owner else None, checkpoint[0] if checkpoint else 0, head)


def pid_of(owner: str | None) -> int | None:
    return None if owner is None else int(owner.split(":")[-2])


def all_relayed(db: Path) -> bool:
    _, checkpoint, head = in_file(db)
    return checkpoint == head > 0


def test_kill_9_of_the_relaying_daemon_hands_the_relay_to_the_other(tmp_path: Path) -> None:
    config = config_with_short_lease(tmp_path)
    db = tmp_path / "shared.db"
    env = {"CATGAD_SQLITE_PATH": str(db)}
    first = Daemon(config, tmp_path / "first", env=env)
    second = Daemon(config, tmp_path / "second", env=env)
    try:
        first.start()
        eventually(lambda: relay_state(first) == "active", 20, "the first relay active")
        second.start()
        assert relay_state(second) == "standby"
        assert pid_of(in_file(db)[0]) == first.pid

        with second.client() as client:  # appended by the standby, relayed by the holder
            for i in range(5):
                assert create_order(client, f"before-{i}").status_code == 201
        eventually(lambda: all_relayed(db), 20, "every event relayed")
        assert pid_of(in_file(db)[0]) == first.pid

        assert first.kill() == -9
        eventually(lambda: relay_state(second) == "active", TTL * 4 + 5, "the second relay active")
        assert pid_of(in_file(db)[0]) == second.pid
        assert "relay active" in second.logs()

        with second.client() as client:
            for i in range(5):
                assert create_order(client, f"after-{i}").status_code == 201
        eventually(lambda: all_relayed(db), 20, "every event relayed")
        assert in_file(db)[1] == 10  # every event, before and after the kill, relayed

        assert second.terminate() == 0
        owner, checkpoint, head = in_file(db)
        assert owner is None and checkpoint == head == 10  # released on a graceful stop
    finally:
        first.stop()
        second.stop()
