"""JSON Schema errors as a user should read them, each at its file:line:column.

`check_document` validates a config document against the assembled schema and
each payload schema against the draft 2020-12 metaschema (what `check_schema`
does, but reporting every error), and says where the errors were so the later
stages can leave those definitions out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from catgad.config.loader import Path, Reporter, did_you_mean

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_BOUNDS = {
    "minimum": "at least",
    "exclusiveMinimum": "more than",
    "maximum": "at most",
    "exclusiveMaximum": "less than",
}
Found = tuple[Path, str, Path | None]  # report path, message, key to point at (None: the value)
Schema = dict[str, Any]


_VALIDATORS: dict[int, tuple[Schema, Draft202012Validator]] = {}


def _validator(schema: Schema) -> Draft202012Validator:
    """One validator per schema object (the assembled schema is made once per process)."""
    known = _VALIDATORS.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    # Payload schemas are checked on their own below: through the schema's `$ref` to the
    # metaschema ($dynamicRef lookups) the same check costs several times as much.
    defs = {**schema["$defs"], "payloadSchema": {"type": "object"}}
    validator = Draft202012Validator({**schema, "$defs": defs})
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


@cache
def _meta_validator() -> Draft202012Validator:
    meta = Draft202012Validator.META_SCHEMA
    return Draft202012Validator(meta, format_checker=Draft202012Validator.FORMAT_CHECKER)


def check_document(
    data: Any, schema: Schema, reporter: Reporter, payloads: tuple[str, ...] = ()
) -> list[Path]:
    """Validate against the JSON Schema, and the payload schemas of the definitions in the
    `payloads` sections against the metaschema; return where errors were."""
    bad: list[Path] = []
    for error in _validator(schema).iter_errors(data):
        bad.extend(_report(error, (), reporter))
    for section in payloads:
        named = data.get(section) if isinstance(data, dict) else None
        for name, raw in (named if isinstance(named, dict) else {}).items():
            if isinstance(raw, dict) and isinstance(raw.get("schema"), dict):
                bad.extend(_check_payload(raw["schema"], (section, name, "schema"), reporter))
    return bad


_VALID_PAYLOADS: set[str] = set()  # loads in one process (tests) repeat the same schemas


def _check_payload(schema: dict[str, Any], prefix: Path, reporter: Reporter) -> list[Path]:
    key = json.dumps(schema, sort_keys=True, default=str)
    if key in _VALID_PAYLOADS:
        return []
    bad: list[Path] = []
    for error in _meta_validator().iter_errors(schema):
        bad.extend(_report(error, prefix, reporter, "invalid JSON Schema: "))
    for path, keyword, hint in _misspelt_keywords(schema, prefix):
        reporter.error(path, f"unknown JSON Schema keyword {keyword!r}{hint}", (*path, keyword))
        bad.append(path)
    if not bad:
        _VALID_PAYLOADS.add(key)
    return bad


# Draft 2020-12 keywords (plus `definitions` and OpenAPI's `example`, common in the wild).
_SUBSCHEMA = (
    *("items", "contains", "not", "if", "then", "else", "additionalProperties"),
    *("propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema"),
)
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_KEYWORDS = frozenset(
    (
        *_SUBSCHEMA,
        *_SUBSCHEMA_MAPS,
        *_SUBSCHEMA_LISTS,
        *"$schema $id $ref $anchor $dynamicRef $dynamicAnchor $vocabulary $comment type enum "
        "const multipleOf maximum exclusiveMaximum minimum exclusiveMinimum maxLength minLength "
        "pattern maxItems minItems uniqueItems maxContains minContains maxProperties "
        "minProperties required dependentRequired title description default deprecated "
        "readOnly writeOnly examples example format contentEncoding contentMediaType".split(),
    )
)


def _misspelt_keywords(schema: Any, path: Path) -> Iterator[tuple[Path, str, str]]:
    """Keys close to a JSON Schema keyword but not one (`requried`): the metaschema allows
    unknown keys, so such a typo would silently switch a check off."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key not in _KEYWORDS and (hint := did_you_mean(key, _KEYWORDS)):
            yield path, key, hint
        elif key in _SUBSCHEMA:
            yield from _misspelt_keywords(value, (*path, key))
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from _misspelt_keywords(sub, (*path, key, name))
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            for index, sub in enumerate(value):
                yield from _misspelt_keywords(sub, (*path, key, index))


def _report(error: ValidationError, prefix: Path, reporter: Reporter, lead: str = "") -> list[Path]:
    paths = []
    for path, message, at in _describe(error):
        full: Path = (*prefix, *path)
        reporter.error(full, lead + message, None if at is None else (*prefix, *at))
        paths.append(full)
    return paths


def _describe(error: ValidationError) -> Iterator[Found]:
    """One jsonschema error as what a user should read: unknown keys one by one, and so on."""
    path: Path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    kind = error.validator
    if _names_a_key(error):
        yield path, f"invalid name {instance!r}: {_message(error)}", (*path, str(instance))
    elif kind == "additionalProperties" and isinstance(instance, dict):
        known = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key in instance:
            if key not in known and not any(re.search(p, key) for p in patterns):
                yield path, f"unknown key {key!r}{did_you_mean(key, known)}", (*path, key)
    elif kind == "required" and isinstance(instance, dict):
        for key in _value(error):
            if key not in instance:
                yield path, f"missing required key {key!r}", path
    elif "errorMessage" in schema:
        at = path if kind in ("oneOf", "anyOf") else None
        if kind == "not" and list(_value(error)) == ["required"]:
            at = (*path, _value(error)["required"][0])  # point at the forbidden key
        yield path, str(schema["errorMessage"]), at
    elif kind in ("anyOf", "oneOf"):
        yield from _branches(error)
    else:
        yield path, _message(error), None


def _names_a_key(error: ValidationError) -> bool:
    """Whether the error is about a mapping key (through `propertyNames`), not a value."""
    schema_path = list(error.schema_path)
    return any(
        part == "propertyNames" and (i == 0 or schema_path[i - 1] != "properties")
        for i, part in enumerate(schema_path)
    )


def _branches(error: ValidationError) -> Iterator[Found]:
    """anyOf/oneOf: explain the alternative the value was meant for, not every one."""
    groups: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        groups.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    alternatives = (
        error.schema.get(str(error.validator), []) if isinstance(error.schema, dict) else []
    )
    if not _env_ref(error.instance):  # a plain value: the `${VAR}` alternative is not meant
        groups = {i: subs for i, subs in groups.items() if not _is_env(alternatives, i)}
    fitting = [subs for subs in groups.values() if not _mismatch(subs)]
    if fitting:
        for sub in min(fitting, key=len):
            yield from _describe(sub)
        return
    path: Path = tuple(error.absolute_path)
    kinds: list[Any] = []
    types: list[str] = []
    for sub in error.context:
        if sub.validator == "const" and list(sub.relative_path) == ["kind"]:
            kinds.append(_value(sub))
        elif sub.validator == "enum" and list(sub.relative_path) == ["kind"]:
            kinds.extend(_value(sub))
        elif sub.validator == "type" and not sub.relative_path:
            value = _value(sub)
            types.extend([value] if isinstance(value, str) else value)
    instance = error.instance
    if kinds and isinstance(instance, dict) and "kind" in instance:
        got = instance["kind"]
        hint = did_you_mean(got, map(str, kinds)) if isinstance(got, str) else ""
        yield (*path, "kind"), f"expected one of {_listing(kinds)}, got {_show(got)}{hint}", None
    else:
        yield path, f"expected {_types(types)}, got {_show(instance)}", None


def _env_ref(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _is_env(alternatives: Any, index: int) -> bool:
    """Whether alternative `index` is the `${VAR}` an editor may see (fragments.ENV_VALUE)."""
    if not isinstance(alternatives, list) or index >= len(alternatives):
        return False
    alternative = alternatives[index]
    return isinstance(alternative, dict) and bool(alternative.get("x-catgad-env"))


def _mismatch(errors: list[ValidationError]) -> bool:
    """The value is not of this alternative's type, or not of its `kind`."""
    for sub in errors:
        if sub.validator == "type" and not sub.relative_path:
            return True
        if sub.validator in ("const", "enum") and list(sub.relative_path) == ["kind"]:
            return True
    return False


def _message(error: ValidationError) -> str:
    kind = error.validator
    value = _value(error)
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if kind == "type":
        expected = _types([value] if isinstance(value, str) else value)
        return f"expected {expected}, got {_show(instance)}"
    if kind == "enum":
        hint = did_you_mean(instance, map(str, value)) if isinstance(instance, str) else ""
        return f"expected one of {_listing(value)}, got {_show(instance)}{hint}"
    if kind == "const":
        return f"expected {json.dumps(value)}, got {_show(instance)}"
    if kind == "pattern":
        return str(schema.get("patternErrorMessage") or f"{instance!r} does not match {value}")
    if kind in _BOUNDS:
        return f"expected {_BOUNDS[kind]} {value}, got {_show(instance)}"
    if kind == "minLength" and value == 1:
        return "must not be empty"
    if kind == "minItems":
        return f"expected at least {value} item{'s' if value != 1 else ''}"
    return str(error.message)


def _value(error: ValidationError) -> Any:
    """The failed keyword's value (typed loosely by jsonschema)."""
    return error.validator_value


def _types(types: list[str]) -> str:
    return " or ".join(_TYPE_NAMES.get(t, t) for t in types) or "another value"


def _listing(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _show(value: Any) -> str:
    """How a YAML value is named in a message."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)
