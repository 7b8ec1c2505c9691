"""`catgad rebuild` and `catgad replay`: offline, and beside a running daemon."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.helpers.daemon import ORDERS_YAML, Daemon, run_cli


def env_for(tmp_path: Path) -> dict[str, str]:
    return {
        "CATGAD_SQLITE_PATH": str(tmp_path / "catgad.db"),
        "CATGAD_READ_SQLITE_PATH": str(tmp_path / "read.db"),
        "CATGAD_REDIS_PROJECTIONS": "false",
    }


def create(env: dict[str, str], order_id: str) -> None:
    data = f'{{"order_id":"{order_id}","customer":"cli","items":[{{"sku":"s","qty":1,"price":7}}]}}'
    done = run_cli("send", str(ORDERS_YAML), "CreateOrder", data, env=env)
    assert done.returncode == 0, done.stderr


def rows(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "read.db") as conn:
        return conn.execute('SELECT "key", status FROM orders ORDER BY "key"').fetchall()


def test_rebuild_offline_builds_the_read_model(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    for order_id in ("o1", "o2"):
        create(env, order_id)  # `catgad send` runs no projection
    done = run_cli("rebuild", str(ORDERS_YAML), "orders", env=env)
    assert done.returncode == 0, done.stderr
    assert "rebuilt; checkpoint 2" in done.stdout
    assert rows(tmp_path) == [("o1", "created"), ("o2", "created")]


def test_rebuild_beside_a_daemon_asks_the_daemon(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    with Daemon(ORDERS_YAML, tmp_path, env=env) as daemon:
        create(daemon.env, "o1")
        done = run_cli("rebuild", str(ORDERS_YAML), "orders", "--timeout", "60", env=daemon.env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "rebuilds it; following its progress" in done.stdout
        with daemon.client() as client:
            assert client.get("/read/orders/o1").json()["status"] == "created"


def test_replay_and_its_usage_errors(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    done = run_cli("replay", str(ORDERS_YAML), "orders", env=env)
    assert done.returncode == 0 and "no open dead letters" in done.stdout
    done = run_cli("replay", str(ORDERS_YAML), "nope", env=env)
    assert done.returncode == 2 and "no projection 'nope'" in done.stderr
    done = run_cli("replay", str(ORDERS_YAML), "orders", "--from", "1", "--to", "3", env=env)
    assert done.returncode == 2 and "catgad rebuild" in done.stderr
    done = run_cli("rebuild", str(ORDERS_YAML), "nope", env=env)
    assert done.returncode == 2 and "no projection 'nope'" in done.stderr
    for verb in ("rebuild", "replay"):
        assert run_cli(verb, "--help").returncode == 0
