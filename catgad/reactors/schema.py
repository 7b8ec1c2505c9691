"""JSON Schema helpers the reactor sections share (they refer to the main schema's `$defs`)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
IDENT = "^[A-Za-z_][A-Za-z0-9_]*$"


def ref(name: str, description: str | None = None) -> Schema:
    schema: Schema = {"$ref": f"#/$defs/{name}"}
    if description:
        schema["description"] = description
    return schema


def closed(description: str, properties: Schema, *required: str) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = list(required)
    schema["additionalProperties"] = False
    return schema
