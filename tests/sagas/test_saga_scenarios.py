"""`catgad test` runs a saga's scenarios: no server, no waiting; a wrong expectation fails with
what was expected and what happened, at the scenario's line."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.daemon import REPO, run_cli

SAGA_YAML = REPO / "config" / "examples" / "order-saga.yaml"


def test_the_examples_saga_scenarios_pass() -> None:
    done = run_cli("test", str(SAGA_YAML))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "ok 3 - a refused shipment refunds the payment, then releases the stock" in lines
    assert lines[-1] == "# 6 passed, 0 failed"


def test_a_wrong_expectation_fails_with_what_happened(tmp_path: Path) -> None:
    text = SAGA_YAML.read_text().replace(
        "          sent: [ReserveStock, ChargePayment, BookShipment, RefundPayment, ReleaseStock]",
        "          sent: [ReserveStock, ChargePayment, BookShipment, ReleaseStock, RefundPayment]",
    )
    config = tmp_path / "order-saga.yaml"
    config.write_text(text)
    done = run_cli("test", str(config), "-k", "refused shipment")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "TAP version 14",
        "1..1",
        "not ok 1 - a refused shipment refunds the payment, then releases the stock",
        "  ---",
        "  message: \"sent: expected ['ReserveStock', 'ChargePayment', 'BookShipment', "
        "'ReleaseStock', 'RefundPayment'], got ['ReserveStock', 'ChargePayment', "
        "'BookShipment', 'RefundPayment', 'ReleaseStock']\"",
        f"  at: {config}:86:9",
        "  ...",
        "# 0 passed, 1 failed",
    ]
