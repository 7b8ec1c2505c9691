"""`catgad send`: one command in-process against the config's store, printed as JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers.daemon import run_cli

EXAMPLE = Path(__file__).parents[2] / "config" / "examples" / "orders.yaml"


def send(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("send", str(EXAMPLE), *args, env={"CATGAD_SQLITE_PATH": str(db)})


def test_send_appends_and_a_retry_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    data = '{"order_id":"o1","customer":"alice","items":[{"sku":"b","qty":2,"price":1250}]}'
    first = send(db, "CreateOrder", data, "--idempotency-key", "k1")
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout)
    assert body["stream"] == "Order-o1" and body["version"] == 1
    again = send(db, "CreateOrder", data, "--idempotency-key", "k1")
    assert again.returncode == 0
    assert json.loads(again.stdout)["duplicate"] is True
    refused = send(db, "PayOrder", '{"order_id":"o1","amount":1}')
    assert refused.returncode == 1
    problem = json.loads(refused.stdout)
    assert problem["status"] == 422 and problem["detail"] == "amount must equal the order total"


def test_send_rejects_bad_json_data(tmp_path: Path) -> None:
    done = send(tmp_path / "o.db", "CreateOrder", "{not json")
    assert done.returncode == 2
    assert "DATA is not valid JSON" in done.stderr and "Traceback" not in done.stderr
