"""`catgad test`: the example's scenarios pass; a wrong expectation fails with a diagnosis."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.daemon import run_cli as catgad

EXAMPLES = Path(__file__).parents[2] / "config" / "examples"


def test_example_scenarios_pass() -> None:
    done = catgad("test", str(EXAMPLES / "orders.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "TAP version 14"
    count = int(lines[1].removeprefix("1.."))
    assert count >= 9
    assert sum(line.startswith("ok ") for line in lines) == count
    assert lines[-1] == f"# {count} passed, 0 failed"


def test_failing_scenarios_are_reported(tmp_path: Path) -> None:
    config = (
        (EXAMPLES / "orders.yaml")
        .read_text()
        .replace("  - orders.tests.yaml", "  - wrong.tests.yaml")
    )
    (tmp_path / "orders.yaml").write_text(config)
    (tmp_path / "wrong.tests.yaml").write_text(
        """
tests:
  - name: expects the wrong event
    when:
      command: CreateOrder
      data: {order_id: o1, customer: a, items: [{sku: s, qty: 1, price: 5}]}
    then:
      events: [{type: OrderPaid, data: {order_id: o1, amount: 5}}]
  - name: expects a rejection that does not come
    when:
      command: CreateOrder
      data: {order_id: o1, customer: a, items: [{sku: s, qty: 1, price: 5}]}
    then:
      rejected: {status: 422}
  - name: expects the wrong message
    given:
      - {type: OrderCreated, data: {order_id: o1, customer: a, items: []}}
    when:
      command: PayOrder
      data: {order_id: o1, amount: 3}
    then:
      rejected: {status: 422, message: something else}
  - name: expects a wrong state
    when:
      command: CreateOrder
      data: {order_id: o1, customer: a, items: [{sku: s, qty: 2, price: 5}]}
    then:
      state: {total: 11}
"""
    )
    done = catgad("test", str(tmp_path / "orders.yaml"))
    assert done.returncode == 1
    out = done.stdout
    assert "not ok 1 - expects the wrong event" in out
    assert "expected events OrderPaid" in out and "got OrderCreated" in out
    assert "not ok 2 - expects a rejection that does not come" in out
    assert "not ok 3 - expects the wrong message" in out
    assert "amount must equal the order total" in out
    assert "not ok 4 - expects a wrong state" in out and "got 10" in out
    assert "wrong.tests.yaml:" in out  # points at the scenario in its file
    assert out.rstrip().endswith("# 0 passed, 4 failed")


def test_read_model_scenarios_pass_and_fail(tmp_path: Path) -> None:
    config = (
        (EXAMPLES / "orders.yaml")
        .read_text()
        .replace("  - orders.tests.yaml", "  - rows.tests.yaml")
    )
    (tmp_path / "orders.yaml").write_text(config)
    (tmp_path / "rows.tests.yaml").write_text(
        """
tests:
  - name: a paid order's row
    given:
      - {type: OrderCreated, data: {order_id: o1, customer: a, items: [{sku: s, qty: 2, price: 5}]}}
      - {type: OrderPaid, data: {order_id: o1, amount: 10}}
    then:
      rows:
        - {projection: orders, key: o1, row: {customer: a, status: paid, total: 10, tracking: null}}
        - {projection: customer_totals, key: a, fields: {orders: 1}}
  - name: expects the wrong row
    given:
      - {type: OrderCreated, data: {order_id: o1, customer: a, items: [{sku: s, qty: 2, price: 5}]}}
    then:
      rows:
        - {projection: orders, key: o1, fields: {status: shipped, total: 10}}
        - {projection: orders, key: o2, fields: {status: created}}
"""
    )
    done = catgad("test", str(tmp_path / "orders.yaml"))
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "ok 1 - a paid order's row" in out
    assert "not ok 2 - expects the wrong row" in out
    assert "orders['o1'].status: expected 'shipped', got 'created'" in out
    assert "orders['o2']: expected a row, but there is none" in out
    block = out.split("not ok 2 - expects the wrong row")[1].split("  ...")[0]
    assert block.count("message:") == 2  # the total was right: not reported
    assert "rows.tests.yaml:" in out
    assert out.rstrip().endswith("# 1 passed, 1 failed")


def test_every_verb_has_help() -> None:
    for verb in ("run", "validate", "test", "send", "bench"):
        done = catgad(verb, "--help")
        assert done.returncode == 0, (verb, done.stderr)
        assert "usage: catgad " + verb in done.stdout


def test_usage_errors_exit_2_without_traceback() -> None:
    for args in ([], ["frobnicate"], ["validate"], ["send", "x.yaml"]):
        done = catgad(*args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr


def test_missing_config_is_a_clear_error() -> None:
    done = catgad("test", "/nonexistent/orders.yaml")
    assert done.returncode == 1
    assert "/nonexistent/orders.yaml" in done.stderr
    assert "Traceback" not in done.stderr
