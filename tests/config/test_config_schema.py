"""catgad/schema/catgad.schema.json (package data): in step with catgad.app.schema,
accepting the examples, named by their first line and printed by `catgad schema`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from catgad import schema as shipped
from catgad.app.schema import SCHEMA, SCHEMA_ID, default_path, render
from catgad.config.loader import load_document
from tests.helpers.daemon import run_cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "catgad" / "schema" / "catgad.schema.json"
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
MAIN_EXAMPLES = [p for p in EXAMPLES if not p.name.endswith(".tests.yaml")]


class EditorYaml(yaml.SafeLoader):
    """YAML as yaml-language-server reads it (1.2: `on:` is a string key, not true)."""


EditorYaml.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
EditorYaml.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf")
)


def _published() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_schema_file_is_generated_from_schema_py() -> None:
    assert default_path() == SCHEMA_FILE
    assert shipped.text() == render(), (
        "catgad/schema/catgad.schema.json is stale: run `python -m catgad.app.schema`"
    )


def test_the_schema_verb_prints_the_shipped_file() -> None:
    done = run_cli("schema")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == SCHEMA_FILE.read_text(encoding="utf-8")
    assert json.loads(done.stdout)["$id"] == shipped.URL


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_name_the_published_schema(example: Path) -> None:
    first = example.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema={SCHEMA_ID}"


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] == SCHEMA_ID == shipped.URL


def test_every_section_is_described_for_editors() -> None:
    for name, section in SCHEMA["properties"].items():
        assert section.get("description"), f"top-level {name!r} has no description"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_files_validate_as_an_editor_sees_them(example: Path) -> None:
    document = yaml.load(example.read_text(encoding="utf-8"), Loader=EditorYaml)
    document.setdefault("catgad", 1)  # an included fragment need not repeat the version
    assert [e.message for e in _published().iter_errors(document)] == []


@pytest.mark.parametrize("example", MAIN_EXAMPLES, ids=[p.name for p in MAIN_EXAMPLES])
def test_loaded_examples_validate_against_the_published_file(example: Path) -> None:
    document = load_document(example, {})
    assert document.reporter.issues == []
    assert [e.message for e in _published().iter_errors(document.data)] == []


def test_main_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "catgad.schema.json"
    done = subprocess.run(
        [sys.executable, "-m", "catgad.app.schema", str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert target.read_text(encoding="utf-8") == render()
    assert "Warning" not in done.stderr
