"""Helpers every section uses to write its piece of the config's JSON Schema.

A section's fragment may refer to the shared definitions (`cel`, `fieldMap`,
`typeName`, `payloadSchema`, ...) by `ref(name)`; the registry gathers the
fragments and the definitions into one schema (catgad.app.schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Schema = dict[str, Any]

IDENT = "^[A-Za-z_][A-Za-z0-9_]*$"
TYPE_NAME = "^[A-Za-z][A-Za-z0-9_.-]*$"  # dots allowed for CloudEvents-style types
LISTEN = r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"
# Editors see `${VAR}` unexpanded; catgad checks values after substitution. Patterns
# of values likely to come from the environment accept a reference so editors do too.
ENV_REF = r"\$\{[^}]+\}"
META_SCHEMA = "https://json-schema.org/draft/2020-12/schema"


def or_env(pattern: str) -> str:
    return f"(?:{pattern})|{ENV_REF}"


def text(description: str, **extra: Any) -> Schema:
    return {"type": "string", "minLength": 1, "description": description, **extra}


def ref(name: str, description: str | None = None) -> Schema:
    schema: Schema = {"$ref": f"#/$defs/{name}"}
    if description:
        schema["description"] = description
    return schema


def closed(description: str, properties: Schema, *required: str, **extra: Any) -> Schema:
    """A mapping whose unknown keys are errors, so a typo cannot hide."""
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = list(required)
    schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def named(description: str, item: Schema, title: str) -> Schema:
    """A mapping of user-chosen names to definitions (commands, events, ...)."""
    return {
        "type": "object",
        "title": title,
        "description": description,
        "propertyNames": ref("typeName"),
        "additionalProperties": item,
    }


def kinded(
    title: str,
    description: str,
    default: str,
    long: Schema,
    kinds: Mapping[str, Schema | None],
) -> Schema:
    """`store: redis` (short form) or `store: {kind: redis, url: ...}` (long form).

    `kinds` maps each kind to the schema of its `options` (None: it takes none); the
    long form checks the options of the kind it names (the default kind without one)."""
    names = list(kinds)
    short = {"type": "string", "enum": names, "description": f"{title} kind, with its defaults"}
    kind = {"enum": names, "default": default, "description": f"{title} kind"}
    long["properties"] = {"kind": kind, **long["properties"]}
    per_kind = []
    for name, options in kinds.items():
        chosen: Schema = {"properties": {"kind": {"const": name}}, "required": ["kind"]}
        if name == default:
            chosen = {"anyOf": [chosen, {"not": {"required": ["kind"]}}]}
        if options is None:
            options = closed(f"{name} takes no options", {})
        per_kind.append({"if": chosen, "then": {"properties": {"options": options}}})
    long["allOf"] = [*long.get("allOf", []), *per_kind]
    return {"title": title, "description": description, "default": default, "anyOf": [short, long]}


def one_of_keys(first: str, second: str, message: str) -> Schema:
    return {"oneOf": [{"required": [first]}, {"required": [second]}], "errorMessage": message}


# A `${VAR}` as an editor sees it, unexpanded; catgad checks the value after substitution.
# Marked so error messages explain the value's own alternative, not this one.
ENV_VALUE: Schema = {"type": "string", "pattern": f"^{ENV_REF}$", "x-catgad-env": True}


def or_env_value(schema: Schema) -> Schema:
    """`schema`, or a `${VAR}` an editor sees unexpanded (checked after substitution)."""
    description = schema.get("description")
    value = {k: v for k, v in schema.items() if k != "description"}
    both: Schema = {"anyOf": [value, ENV_VALUE]}
    if description:
        both["description"] = description
    return both


def positive(description: str, default: float, kind: str = "number") -> Schema:
    """A positive number, or a `${VAR}` an editor sees unexpanded."""
    number = {"type": kind, "exclusiveMinimum": 0}
    return {**or_env_value(number), "default": default, "description": description}


_JSON_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
}


def typed(kind: type | tuple[type, ...], description: str) -> Schema:
    """The schema of a value of Python type `kind` (or one of several): how the backends
    declare the options they read."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = list(dict.fromkeys(_JSON_TYPES[k] for k in kinds))
    if "integer" in names and "number" in names:
        names.remove("integer")
    return {"type": names[0] if len(names) == 1 else names, "description": description}


def options(description: str, known: Mapping[str, Schema]) -> Schema:
    """A backend's `options`: each known key with its schema, any other key an error."""
    return closed(description, dict(known))


def properties(schema: Any) -> set[str] | None:
    """The fields a payload schema declares; None when it does not list them."""
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return set(schema["properties"])
    return None


# The definitions every section may refer to with ref(name).
SHARED_DEFS: Schema = {
    "typeName": {
        "type": "string",
        "pattern": TYPE_NAME,
        "patternErrorMessage": "a name starts with a letter and has only letters, digits, _ . -",
    },
    "cel": {
        "title": "CEL expression",
        "type": ["string", "number", "boolean"],
        "minLength": 1,
        "description": "A CEL (Common Expression Language) expression, compiled at load. "
        "Quote string literals inside it: status: \"'paid'\".",
    },
    "fieldMap": {
        "type": "object",
        "description": "field name → CEL expression computing its value",
        "propertyNames": {"pattern": IDENT, "patternErrorMessage": "expected a field name"},
        "additionalProperties": ref("cel"),
    },
    "payloadSchema": {
        "$ref": META_SCHEMA,
        "type": "object",
        "description": "JSON Schema (draft 2020-12) of the payload; its `properties` are "
        "the fields that rules may read.",
    },
    "message": {
        "type": "object",
        "description": "An event or command instance: its type and data.",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": ref("typeName", "event type"),
            "data": {"type": "object", "description": "payload", "default": {}},
        },
    },
}
