"""`catgad run` as a process: start line, graceful shutdown under load, listen errors."""

from __future__ import annotations

import asyncio
import signal
import socket
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers.daemon import ORDERS_YAML, Daemon, run_cli

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]


def order(order_id: str) -> dict[str, object]:
    return {"order_id": order_id, "customer": "c", "items": [{"sku": "s", "qty": 1, "price": 7}]}


def test_start_logs_one_json_line_with_the_url(tmp_path: Path) -> None:
    with Daemon(ORDERS_YAML, tmp_path) as daemon:
        records = [
            orjson.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")
        ]
        started = [r for r in records if r.get("url") == daemon.url]
        assert len(started) == 1, daemon.logs()
        assert started[0]["event"] == f"listening on {daemon.url}"
        assert started[0]["level"] == "info"
        assert started[0]["service"] == "orders"
        assert daemon.interrupt() == 0  # Ctrl+C is a graceful stop too


async def test_sigterm_finishes_in_flight_commands(tmp_path: Path) -> None:
    daemon = Daemon(ORDERS_YAML, tmp_path).start()
    acked: list[tuple[str, str]] = []  # (order id, command id) answered 2xx
    unexpected: list[str] = []
    enough = asyncio.Event()

    async def worker(n: int) -> None:
        async with daemon.async_client() as client:
            for i in range(10_000):
                order_id, key = f"w{n}-{i}", str(uuid.uuid4())
                try:
                    resp = await client.post(
                        "/commands/CreateOrder",
                        json=order(order_id),
                        headers={"Idempotency-Key": key},
                    )
                except httpx.TransportError:
                    return  # the server went away: this command was never acknowledged
                if resp.status_code == 201:
                    acked.append((order_id, key))
                    if len(acked) >= 60:
                        enough.set()
                else:
                    unexpected.append(resp.text)
                    return

    try:
        tasks = [asyncio.create_task(worker(n)) for n in range(16)]
        await asyncio.wait_for(enough.wait(), timeout=60)
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        code = await asyncio.to_thread(daemon.wait)
        assert code == 0, daemon.logs()
        assert unexpected == []
        assert "Traceback" not in daemon.logs()

        daemon.start()  # same database: every acknowledged command must be there
        async with daemon.async_client() as client:
            for order_id, key in acked:
                resp = await client.get(f"/streams/Order-{order_id}")
                assert resp.status_code == 200, (order_id, resp.text)
                [event] = resp.json()["events"]
                assert event["causationid"] == key
    finally:
        daemon.stop()


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli(
            "run", str(ORDERS_YAML), "--listen", f"127.0.0.1:{port}",
            env={"CATGAD_SQLITE_PATH": str(tmp_path / "x.db")},
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"catgad run: cannot listen on 127.0.0.1:{port}: address already in use"]


def test_second_daemon_on_the_same_port_fails_cleanly(tmp_path: Path) -> None:
    with Daemon(ORDERS_YAML, tmp_path / "a") as first:
        proc = run_cli(
            "run", str(ORDERS_YAML), "--listen", f"127.0.0.1:{first.port}",
            env={"CATGAD_SQLITE_PATH": str(tmp_path / "b.db")},
        )  # fmt: skip
        assert proc.returncode == 1
        assert "address already in use" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert httpx.get(f"{first.url}/healthz").status_code == 200


@pytest.mark.parametrize("listen", ["nope", "127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_listen_flag_is_a_usage_error(listen: str) -> None:
    proc = run_cli("run", str(ORDERS_YAML), "--listen", listen)
    assert proc.returncode == 2
    assert "HOST:PORT" in proc.stderr


def test_unresolvable_host(tmp_path: Path) -> None:
    proc = run_cli(
        "run", str(ORDERS_YAML), "--listen", "no-such-host.invalid:8080",
        env={"CATGAD_SQLITE_PATH": str(tmp_path / "x.db")},
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("catgad run: cannot listen on no-such-host.invalid:8080")
    assert "Traceback" not in proc.stderr


def test_missing_config_is_exit_1_without_traceback(tmp_path: Path) -> None:
    proc = run_cli("run", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 1
    assert "absent.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_listen_from_the_environment(tmp_path: Path) -> None:
    # Without --listen the config's service.listen (${CATGAD_LISTEN}) is used.
    with Daemon(ORDERS_YAML, tmp_path, listen_flag=False) as daemon:
        assert httpx.get(f"{daemon.url}/healthz").json() == {"status": "ok"}
        assert daemon.terminate() == 0
