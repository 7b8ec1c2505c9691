"""Logs on a non-TTY: JSON lines, the ids of a command's path on each line
of it, and `catgad test` keeping stdout for its TAP report."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import REPO, Daemon, free_port, run_cli

SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"
ORDERS_YAML = REPO / "config" / "examples" / "orders.yaml"
TRACE = "0af7651916cd43dd8448eb211c80319c"

pytestmark = pytest.mark.slow


def test_a_commands_log_lines_carry_its_ids(tmp_path: Path) -> None:
    # payments down (a closed port): the webhook's failed attempts are logged on the path
    env = {
        "PAYMENTS_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/payment",
        "OTEL_TRACES_EXPORTER": "console",  # spans go to stdout; the log to stderr
    }
    with (
        Daemon(SAGA_YAML, tmp_path, env=env, ready_timeout=90) as daemon,
        daemon.client() as client,
    ):
        headers = {"X-Request-Id": "obs-req-1", "traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}
        body = {"order_id": "L1", "amount": 100}
        response = client.post("/commands/ChargePayment", json=body, headers=headers)
        assert response.status_code >= 500, response.text
        deadline = time.monotonic() + 10
        while True:
            records = [
                json.loads(line) for line in daemon.log_path.read_text().splitlines()
                if line.startswith("{") and '"event"' in line
            ]  # fmt: skip
            failed = [r for r in records if r["event"] == "webhook attempt failed"]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert failed, "no webhook failure logged"
    for record in failed:
        assert record["request_id"] == "obs-req-1"
        assert record["stream"].endswith("L1")
        assert record["trace_id"] == TRACE
        assert re.fullmatch(r"[0-9a-f-]{36}", record["command_id"]), record
    assert len({r["command_id"] for r in failed}) == 1  # every attempt is the same command
    started = [r for r in records if r.get("logger", "").startswith("catgad")]
    assert started and all("timestamp" in r for r in started)


def test_catgad_test_keeps_stdout_for_tap(tmp_path: Path) -> None:
    done = run_cli("test", str(ORDERS_YAML), env={"CATGAD_SQLITE_PATH": str(tmp_path / "t.db")})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("TAP version") or re.match(r"^1\.\.\d+$", lines[0]), lines[:3]
    tap = re.compile(r"^(TAP version \d+|1\.\.\d+|(not )?ok \d+.*|#.*|\s+.*)$")
    stray = [line for line in lines if line and not tap.match(line)]
    assert stray == [], f"non-TAP lines on stdout: {stray[:5]}"
    assert any(line.startswith("ok ") for line in lines)


def test_a_verb_other_than_run_logs_json_lines_with_the_commands_ids(tmp_path: Path) -> None:
    # `catgad send` runs the command in-process; the payments webhook is down (a closed port)
    env = {
        "PAYMENTS_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/payment",
        "CATGAD_SQLITE_PATH": str(tmp_path / "send.db"),
    }
    body = '{"order_id": "V1", "amount": 100}'
    done = run_cli("send", str(SAGA_YAML), "ChargePayment", body, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    *lines, verdict = done.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every log line is one JSON object
    assert [r["event"] for r in records] == ["webhook attempt failed"] * 3, records
    for record in records:
        assert record["level"] == "warning" and record["logger"] == "catgad.handlers"
        assert record["stream"] == "Payment-V1" and "timestamp" in record
        assert re.fullmatch(r"[0-9a-f-]{36}", record["command_id"]), record
    assert verdict.startswith("catgad send: handler 'payments' failed after 3 attempts")
    assert done.stdout == ""
