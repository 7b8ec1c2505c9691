"""The OpenAPI document generated from a config is valid OpenAPI 3.1 and carries its schemas."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from catgad.app.load import load_config
from catgad.http.openapi import build_openapi
from catgad.model import Config
from tests.helpers.daemon import ORDERS_YAML


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ORDERS_YAML)


@pytest.fixture(scope="module")
def doc(config: Config) -> dict[str, Any]:
    return build_openapi(config)


def test_valid_openapi_31(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] == "orders"


def test_every_command_has_its_path_and_schema(config: Config, doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for name, cmd in config.commands.items():
        op = doc["paths"][f"/commands/{name}"]["post"]
        content = op["requestBody"]["content"]
        assert content["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/Command.{name}"
        }
        assert "application/cloudevents+json" in content
        stored = dict(schemas[f"Command.{name}"])
        stored.pop("description", None)
        expected = {k: v for k, v in cmd.schema.items() if k != "description"}
        assert stored == expected
        assert {"200", "201", "400", "404", "409", "413", "422", "503"} <= set(op["responses"])
        params = {p["$ref"].rsplit("/", 1)[1] for p in op["parameters"]}
        assert params == {"Idempotency-Key", "If-Match"}


def test_events_under_components(config: Config, doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for name, event in config.events.items():
        assert schemas[f"Event.{name}"]["properties"] == event.schema["properties"]
        assert schemas[f"Event.{name}"]["x-catgad-schema-version"] == event.version


def test_read_and_operations_routes(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    for path in ("/streams/{stream_id}", "/aggregates/{type}/{id}", "/healthz", "/readyz",
                 "/metrics", "/openapi.json"):  # fmt: skip
        assert "get" in paths[path], path
    assert "inclusive" in paths["/streams/{stream_id}"]["get"]["description"]


def test_the_document_does_not_alias_the_config(config: Config) -> None:
    doc = build_openapi(config)
    doc["components"]["schemas"]["Command.CreateOrder"]["mutated"] = True
    assert "mutated" not in config.commands["CreateOrder"].schema


def test_local_refs_in_user_schemas_stay_resolvable(config: Config) -> None:
    from dataclasses import replace

    cmd = config.commands["CreateOrder"]
    schema = {"$defs": {"id": {"type": "string"}}, "type": "object",
              "properties": {"order_id": {"$ref": "#/$defs/id"}}}  # fmt: skip
    patched = replace(
        config, commands={**config.commands, "CreateOrder": replace(cmd, schema=schema)}
    )
    doc = build_openapi(patched)
    validate(doc)
    ref = doc["components"]["schemas"]["Command.CreateOrder"]["properties"]["order_id"]["$ref"]
    assert ref == "#/components/schemas/Command.CreateOrder/$defs/id"
    assert schema["properties"]["order_id"]["$ref"] == "#/$defs/id"  # the config is untouched
