"""The OpenAPI paths and schemas of the saga endpoints, one start-data schema per saga; and
the diagram operation every reactor shares."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from catgad.sagas.model import SagaDef
from catgad.sagas.state import STATUSES

JSON = "application/json"
PROBLEM = "application/problem+json"


def component_ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def saga_schemas(sagas: Mapping[str, SagaDef]) -> dict[str, Any]:
    if not sagas:
        return {}
    text = {"type": "string"}
    moment = {"type": "string", "format": "date-time"}
    schemas: dict[str, Any] = {
        "SagaInstance": {
            "type": "object",
            "description": "A saga instance: its status, where it stands, and the log of its "
            "decisions (steps and compensations, with command ids, outcomes and times).",
            "required": ["saga", "id", "stream", "status", "input", "version", "log"],
            "properties": {
                "saga": text,
                "id": text,
                "stream": {"type": "string", "description": "Saga-<name>-<id>"},
                "status": {"enum": list(STATUSES)},
                "step": {"type": ["string", "null"], "description": "the step under way"},
                "input": {"type": "object", "description": "the start data"},
                "reason": {"type": ["string", "null"], "description": "why it compensates"},
                "version": {"type": "integer", "minimum": 1},
                "started_at": moment,
                "updated_at": moment,
                "compensations": {
                    "type": "object",
                    "properties": {"planned": {"type": "integer"}, "done": {"type": "integer"}},
                },
                "log": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["decision", "at"],
                        "properties": {
                            "decision": text,
                            "at": moment,
                            "step": {"type": "integer"},
                            "name": text,
                            "command": text,
                            "command_id": text,
                            "data": {"type": "object"},
                            "events": {"type": "array", "items": {"type": "object"}},
                            "reason": text,
                            "status": {"type": ["integer", "null"]},
                            "event_id": text,
                            "event_type": text,
                        },
                    },
                },
            },
        },
        "SagaList": {
            "type": "object",
            "required": ["saga", "instances"],
            "properties": {
                "saga": text,
                "instances": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "status", "version"],
                        "properties": {
                            "id": text,
                            "status": {"enum": list(STATUSES)},
                            "step": {"type": ["string", "null"]},
                            "version": {"type": "integer"},
                            "started_at": moment,
                            "updated_at": moment,
                        },
                    },
                },
            },
        },
        "SagaConflictProblem": {
            "allOf": [
                component_ref("schemas", "Problem"),
                {
                    "type": "object",
                    "description": "saga-conflict: the instance's status does not allow this",
                    "properties": {"saga": text, "id": text, "saga_status": text},
                },
            ]
        },
    }
    for name, saga in sorted(sagas.items()):
        start = copy.deepcopy(saga.schema.schema) if saga.schema is not None else {"type": "object"}
        start.setdefault("description", f"start data of a {name} saga (its `input`)")
        schemas[f"SagaStart.{name}"] = start
    return schemas


def saga_paths(sagas: Mapping[str, SagaDef]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    instance_ok = {
        "description": "The instance.",
        "content": {JSON: {"schema": component_ref("schemas", "SagaInstance")}},
    }
    conflict = {
        "description": "The instance's status does not allow this.",
        "content": {PROBLEM: {"schema": component_ref("schemas", "SagaConflictProblem")}},
    }
    not_found = component_ref("responses", "NotFound")
    for name, saga in sorted(sagas.items()):
        base = f"/sagas/{name}"
        instance = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        how = (
            "Its id is computed by `start.id` from the body."
            if saga.start_id is not None
            else "Its id is the Idempotency-Key header, or a new one."
        )
        starts = f" An event {saga.start_event} starts one too." if saga.start_event else ""
        paths[base] = {
            "post": {
                "operationId": f"sagas.{name}.start",
                "tags": ["sagas"],
                "summary": saga.description or f"Start a {name} saga",
                "description": f"Starts an instance with the body as its start data. {how} "
                f"A start with the id of an existing instance returns that instance (200); "
                f"nothing runs twice.{starts}",
                "parameters": [component_ref("parameters", "Idempotency-Key")],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": component_ref("schemas", f"SagaStart.{name}")}},
                },
                "responses": {
                    "200": instance_ok | {"description": "The instance with that id, as it is."},
                    "201": instance_ok
                    | {
                        "description": "Started.",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "400": component_ref("responses", "BadRequest"),
                    "404": not_found,
                    "413": component_ref("responses", "PayloadTooLarge"),
                    "503": component_ref("responses", "Unavailable"),
                },
            },
            "get": {
                "operationId": f"sagas.{name}.list",
                "tags": ["sagas"],
                "summary": f"{name} instances this daemon knows of",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}}
                ],
                "responses": {
                    "200": {
                        "description": "Instances.",
                        "content": {JSON: {"schema": component_ref("schemas", "SagaList")}},
                    },
                    "400": component_ref("responses", "BadRequest"),
                },
            },
        }
        paths[f"{base}/diagram"] = diagram_path(
            f"sagas.{name}.diagram",
            "sagas",
            f"The {name} saga's steps and compensations as a Mermaid flowchart",
            instance=True,
        )
        paths[f"{base}/{{id}}"] = {
            "get": {
                "operationId": f"sagas.{name}.get",
                "tags": ["sagas"],
                "summary": f"A {name} instance: status, step, input and its log",
                "parameters": [instance],
                "responses": {"200": instance_ok, "404": not_found},
            }
        }
        for verb, summary in (
            ("retry", "Try a failed saga's compensation again"),
            ("cancel", "Stop a running saga; it compensates what it did"),
        ):
            paths[f"{base}/{{id}}/{verb}"] = {
                "post": {
                    "operationId": f"sagas.{name}.{verb}",
                    "tags": ["sagas"],
                    "summary": summary,
                    "parameters": [instance],
                    "responses": {
                        "200": instance_ok,
                        "404": not_found,
                        "409": conflict,
                        "503": component_ref("responses", "Unavailable"),
                    },
                }
            }
    return paths


def diagram_path(operation: str, tag: str, summary: str, *, instance: bool) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": "format",
            "in": "query",
            "schema": {"enum": ["mermaid", "svg"], "default": "mermaid"},
            "description": "mermaid text, or an SVG drawn by Graphviz on the server",
        }
    ]
    if instance:
        parameters.append(
            {
                "name": "instance",
                "in": "query",
                "schema": {"type": "string"},
                "description": "highlight where this instance stands, and the way it came",
            }
        )
    responses: dict[str, Any] = {
        "200": {
            "description": "Mermaid text, or SVG.",
            "content": {"text/vnd.mermaid": {}, "image/svg+xml": {}},
        },
        "503": component_ref("responses", "Unavailable"),
        "400": component_ref("responses", "BadRequest"),
        "404": component_ref("responses", "NotFound"),
    }
    return {
        "get": {
            "operationId": operation,
            "tags": [tag],
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        }
    }
