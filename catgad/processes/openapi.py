"""The OpenAPI paths of the process endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from catgad.processes.model import ProcessDef
from catgad.sagas.openapi import JSON, PROBLEM, component_ref, diagram_path


def process_paths(processes: Mapping[str, ProcessDef]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    instance_ok = {
        "description": "The instance: state, data, status, history with times, "
        "the pending timer and the approval waited for.",
        "content": {JSON: {"schema": {"type": "object"}}},
    }
    not_found = component_ref("responses", "NotFound")
    conflict = {
        "description": "The instance waits for no decision (decided, timed out, finished).",
        "content": {PROBLEM: {"schema": component_ref("schemas", "Problem")}},
    }
    instance = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    for name, process in sorted(processes.items()):
        base = f"/processes/{name}"
        paths[f"{base}/diagram"] = diagram_path(
            f"processes.{name}.diagram",
            "processes",
            f"The {name} process's state machine as a Mermaid stateDiagram-v2",
            instance=True,
        )
        paths[base] = {
            "get": {
                "operationId": f"processes.{name}.list",
                "tags": ["processes"],
                "summary": f"{name} instances this daemon knows of",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"enum": sorted(process.states)}}
                ],
                "responses": {
                    "200": {"description": "Instances.", "content": {JSON: {}}},
                    "400": component_ref("responses", "BadRequest"),
                },
            }
        }
        paths[f"{base}/{{id}}"] = {
            "get": {
                "operationId": f"processes.{name}.get",
                "tags": ["processes"],
                "summary": f"A {name} instance",
                "parameters": [instance],
                "responses": {"200": instance_ok, "404": not_found},
            }
        }
        for verb in ("approve", "reject"):
            paths[f"{base}/{{id}}/{verb}"] = {
                "post": {
                    "operationId": f"processes.{name}.{verb}",
                    "tags": ["processes"],
                    "summary": f"A person's decision: {verb}",
                    "parameters": [instance],
                    "requestBody": {
                        "required": False,
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"comment": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": instance_ok,
                        "400": component_ref("responses", "BadRequest"),
                        "404": not_found,
                        "409": conflict,
                        "413": component_ref("responses", "PayloadTooLarge"),
                        "503": component_ref("responses", "Unavailable"),
                    },
                }
            }
    return paths
