"""docs/configuration.md is generated from the schema, so the reference says what
`catgad validate` checks; it names every top-level key and every backend option."""

from __future__ import annotations

from pathlib import Path

from catgad.app import reference
from catgad.app.schema import SCHEMA
from catgad.bus.section import OPTIONS as BUS_OPTIONS
from catgad.store.section import OPTIONS as STORE_OPTIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_reference_is_generated_from_the_schema() -> None:
    assert DOC.read_text(encoding="utf-8") == reference.render(), (
        "docs/configuration.md is stale: python -m catgad.app.reference > docs/configuration.md"
    )


def test_it_names_every_key_and_option() -> None:
    text = reference.render()
    for key in SCHEMA["properties"]:
        assert f"## `{key}`" in text
    for kind, options in STORE_OPTIONS.items():
        for option in options:
            assert f"`store.options.{option} ({kind})`" in text
    for kind, options in BUS_OPTIONS.items():
        for option in options:
            assert f"`bus.options.{option} ({kind})`" in text
