"""docs/projections.md: its YAML loads (its session is run by tests/docs/test_sessions.py)."""

from __future__ import annotations

from pathlib import Path

from catgad.app.load import load_config
from catgad.projections.section import PROJECTIONS
from tests.helpers.daemon import ORDERS_YAML

PAGE = Path(__file__).parents[2] / "docs" / "projections.md"
SECTION = PAGE.read_text()


def test_the_yaml_example_loads(tmp_path: Path) -> None:
    block = SECTION.split("```yaml\n", 1)[1].split("```", 1)[0]
    text = ORDERS_YAML.read_text()
    before, rest = text.split("\nprojections:\n", 1)
    after = rest[rest.index("\nhandlers:\n") :]
    (tmp_path / "service.yaml").write_text(before + "\n" + block + after)
    # the example's read-model scenarios check its own projections, not the page's
    scenarios = (ORDERS_YAML.parent / "orders.tests.yaml").read_text()
    (tmp_path / "orders.tests.yaml").write_text(scenarios.split("\n  # Read models:", 1)[0])
    config = load_config(tmp_path / "service.yaml", env={})
    assert set(PROJECTIONS.of(config)) == {"orders", "notify"}
