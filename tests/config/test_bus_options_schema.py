"""`bus.options.commands` and `bus.options.relay` in the schema: the keys their readers know."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from catgad.bus.relay import RelaySettings
from catgad.bus.section import COMMANDS, RELAY
from catgad.engine.routing import CommandSettings

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_CONFIGS = sorted((ROOT / "tests" / "cluster" / "configs").glob("*-*.yaml"))


def _validator() -> Draft202012Validator:
    published = ROOT / "catgad" / "schema" / "catgad.schema.json"
    return Draft202012Validator(json.loads(published.read_text(encoding="utf-8")))


def _options_schema(name: str) -> dict[str, Any]:
    found: dict[str, Any] = {"commands": COMMANDS, "relay": RELAY}[name]
    return found


def _errors(options: dict[str, Any]) -> list[str]:
    document = {"catgad": 1, "bus": {"kind": "kafka", "options": options}}
    return [e.message for e in _validator().iter_errors(document)]


@pytest.mark.parametrize(
    ("name", "settings"), [("commands", CommandSettings), ("relay", RelaySettings)]
)
def test_the_schema_names_every_setting_its_reader_knows(name: str, settings: type) -> None:
    fields = {f.name for f in dataclasses.fields(settings)}
    assert set(_options_schema(name)["properties"]) == fields
    assert all(p.get("description") for p in _options_schema(name)["properties"].values())


def test_commands_options_are_checked() -> None:
    good = {"topic": "cmds", "group": "g", "timeout": 5, "route": "bus"}
    assert _errors({"commands": good, "partitions": 8}) == []
    assert _errors({"commands": {"timeout": "${CATGAD_COMMAND_TIMEOUT:-15}"}}) == []
    assert _errors({"commands": {"timout": 5}})  # a typo is not silently ignored
    assert _errors({"commands": {"route": "remote"}})
    assert _errors({"commands": {"timeout": 0}})


@pytest.mark.parametrize("config", CLUSTER_CONFIGS, ids=[p.name for p in CLUSTER_CONFIGS])
def test_cluster_configs_bus_sections_validate(config: Path) -> None:
    bus = yaml.safe_load(config.read_text(encoding="utf-8"))["bus"]
    if not config.name.startswith("failover-"):  # those keep every default on purpose
        assert "commands" in bus["options"]
    assert [e.message for e in _validator().iter_errors({"catgad": 1, "bus": bus})] == []
