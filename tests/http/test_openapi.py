"""The OpenAPI document generated from a config is valid OpenAPI 3.1 and carries its schemas."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from catgad.app.load import load_config
from catgad.errors import MalformedRequest
from catgad.http.openapi import build_openapi
from catgad.http.routes import parse_idempotency_key, parse_if_match
from catgad.model import Config
from catgad.projections.section import PROJECTIONS
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


# -- what the document says is what the server does -------------------------------------------

# what a header value can hold: no CR or LF (they end a header line; servers refuse them),
# which a Python-side `$` in the schema's pattern would also let through before a last LF
_HEADER_CHARS = st.characters(
    min_codepoint=0, max_codepoint=0x7F, blacklist_characters="\r\n"
) | st.sampled_from("é\u00a0")


def _accepted(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except MalformedRequest:
        return False
    return True


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(_HEADER_CHARS, max_size=30) | st.from_regex(r'\A"?[0-9]{1,20}"?\Z'))
def test_if_match_pattern_is_what_the_server_accepts(doc: dict[str, Any], raw: str) -> None:
    pattern = doc["components"]["parameters"]["If-Match"]["schema"]["pattern"]
    value = raw.strip(" \t")  # HTTP drops the spaces around a header value before the app
    assert (re.search(pattern, value) is not None) == _accepted(parse_if_match, value), value


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(_HEADER_CHARS, max_size=210) | st.text(_HEADER_CHARS, min_size=195, max_size=205))
def test_idempotency_key_schema_is_what_the_server_accepts(doc: dict[str, Any], raw: str) -> None:
    schema = doc["components"]["parameters"]["Idempotency-Key"]["schema"]
    value = raw.strip(" \t")
    in_schema = Draft202012Validator(schema).is_valid(value)
    assert in_schema == _accepted(parse_idempotency_key, value), repr(value)


def test_every_operation_documents_500_and_problems(doc: dict[str, Any]) -> None:
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "500" in responses, (method, path)
            for status, response in responses.items():
                if int(status) >= 400 and "$ref" not in response:
                    assert "application/problem+json" in response["content"], (status, path)


def test_projection_control_and_reads_document_the_disabled_409(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    for verb in ("rebuild", "stop", "start", "replay"):
        responses = paths[f"/projections/{{name}}/{verb}"]["post"]["responses"]
        problem = responses["409"]["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/ProjectionDisabledProblem"}
    for path in ("/read/{projection}", "/read/{projection}/{key}"):
        assert "409" in paths[path]["get"]["responses"]
    replay = paths["/projections/{name}/replay"]["post"]["responses"]["200"]
    assert replay["content"]["application/json"]["schema"]["$ref"].endswith("/ReplayResult")


def test_cloudevent_ids_are_not_empty(doc: dict[str, Any]) -> None:
    event = doc["components"]["schemas"]["CloudEvent"]["properties"]
    for name in ("id", "source", "type"):
        assert event[name]["minLength"] == 1


def test_no_projection_paths_without_projections(config: Config) -> None:
    from dataclasses import replace

    sections = {k: v for k, v in config.sections.items() if k != PROJECTIONS.key}
    doc = build_openapi(replace(config, sections=sections))
    validate(doc)
    assert "/projections" in doc["paths"]
    assert not [p for p in doc["paths"] if p.startswith(("/projections/", "/read/"))]
