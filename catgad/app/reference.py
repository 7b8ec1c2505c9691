"""docs/configuration.md, written from the JSON Schema: every key, its type, default and
meaning, so the reference cannot drift from what `catgad validate` checks.

    python -m catgad.app.reference > docs/configuration.md
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from catgad.app.schema import SCHEMA
from catgad.config.fragments import Schema

_DEFS: Schema = SCHEMA["$defs"]


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config's JSON Schema (`python -m catgad.app.reference >",
        "docs/configuration.md`; `catgad schema` prints the same schema for",
        "editors). `catgad validate CONFIG` checks all of it, at file:line:column. A value",
        "may be written as `${VAR}` or `${VAR:-default}`: it is read from the environment.",
        "`<name>` stands for a name you choose.",
        "",
    ]
    for key, schema in SCHEMA["properties"].items():
        lines += [f"## `{key}`", "", _describe(schema), ""]
        rows = list(_rows(schema, key))
        if rows:
            lines += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    lines += ["## Shared definitions", ""]
    for name, schema in _DEFS.items():
        rows = list(_rows(schema, f"<{name}>"))
        lines += [f"### `{name}`", "", _describe(schema), ""]
        if rows:
            lines += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines).rstrip() + "\n"


def _describe(schema: Schema) -> str:
    schema = _resolved(schema)
    text = schema.get("description") or schema.get("title") or ""
    kinds = _kinds(schema)
    if kinds:
        text += f" Short form: one of {', '.join(f'`{k}`' for k in kinds)}."
    return " ".join(str(text).split())


def _resolved(schema: Schema) -> Schema:
    """A `$ref` to a shared definition, followed (its own description kept)."""
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        target = dict(_DEFS[ref.removeprefix("#/$defs/")])
        if "description" in schema:
            target["description"] = schema["description"]
        return target
    return schema


def _kinds(schema: Schema) -> list[str]:
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "string" and "enum" in branch:
            return [str(k) for k in branch["enum"]]
    return []


def _object(schema: Schema) -> Schema | None:
    """The mapping form of a schema (the long form of `store: sqlite | {kind: ...}`)."""
    schema = _resolved(schema)
    if "properties" in schema or schema.get("type") == "object":
        return schema
    for branch in schema.get("anyOf", []):
        if isinstance(branch, dict) and "properties" in branch:
            return branch
    return None


def _rows(schema: Schema, path: str, depth: int = 0) -> Iterator[str]:
    if depth > 6:
        return
    shape = _object(schema)
    if shape is None:
        items = schema.get("items")
        if isinstance(items, dict) and "$ref" not in items:
            yield from _rows(items, f"{path}[]", depth + 1)
        return
    for key, sub in shape.get("properties", {}).items():
        yield _row(f"{path}.{key}", sub)
        if "$ref" not in sub:
            yield from _rows(sub, f"{path}.{key}", depth + 1)
    named = shape.get("additionalProperties")
    if isinstance(named, dict):
        ref = named.get("$ref", "")
        if ref:
            yield _row(f"{path}.<name>", named)
        else:
            yield from _rows(named, f"{path}.<name>", depth + 1)
    for condition in shape.get("allOf", []):
        kind = condition.get("if", {}).get("properties", {}).get("kind", {}).get("const")
        if kind is None:
            kind = _default_kind(condition)
        options = condition.get("then", {}).get("properties", {}).get("options")
        if kind is not None and isinstance(options, dict):
            for key, sub in options.get("properties", {}).items():
                yield _row(f"{path}.options.{key} ({kind})", sub)


def _default_kind(condition: Schema) -> str | None:
    for branch in condition.get("if", {}).get("anyOf", []):
        kind = branch.get("properties", {}).get("kind", {}).get("const")
        if kind is not None:
            return str(kind)
    return None


def _row(path: str, schema: Schema) -> str:
    resolved = _resolved(schema)
    default = resolved.get("default", schema.get("default"))
    shown = "" if default is None else f"`{json.dumps(default)}`"
    meaning = _describe(schema).replace("|", "\\|")
    return f"| `{path}` | {_type(schema)} | {shown} | {meaning} |"


def _type(schema: Schema) -> str:
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return f"[{ref.removeprefix('#/$defs/')}](#{ref.removeprefix('#/$defs/').lower()})"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    names: list[str] = []
    for branch in schema.get("anyOf", []):
        if branch.get("x-catgad-env"):
            continue
        names.append(_type(branch))
    if names:
        return " or ".join(names)
    kind: Any = schema.get("type", "any")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


if __name__ == "__main__":
    print(render(), end="")
