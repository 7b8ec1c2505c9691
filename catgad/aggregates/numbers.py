"""Numbers as their schema declares them: `integer` fields hold ints, `number` fields floats.

JSON Schema counts 5.0 as an integer and 5 as a number, but CEL does not mix
int and double: `qty * price` fails when one of them arrived as 5.0. Data that
passed its schema is therefore normalised before any rule sees it, so a rule
that works for one valid payload works for every valid payload of the same
shape, and what is stored reads back the same way it was decided.

    normalise = number_normaliser(schema)   # None: the schema declares no number
    data = normalise(data)                  # changed in place, and returned

Only what the schema pins down is touched: a field typed `integer` (and not
also `number`) turns an integral float into an int; one typed `number` (and not
also `integer`) turns an int into a float when the float holds it exactly (a
larger int is left as it is: no digit is lost). Branches of `anyOf`/`oneOf`
are not followed, since which one applies is the validator's choice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Normaliser = Callable[[Any], Any]

# A float holds every int up to 2**53 exactly; beyond, converting would change the value.
_EXACT = 2**53


_INT64 = 2**63


def _to_int(value: Any) -> Any:
    if type(value) is float and value.is_integer() and -_INT64 <= value < _INT64:
        return int(value)  # -0.0 becomes 0; beyond 64 bits no store holds it as an int
    return value


def _to_float(value: Any) -> Any:
    if type(value) is int and -_EXACT <= value <= _EXACT:
        return float(value)
    return value


def number_normaliser(schema: Any) -> Normaliser | None:
    """The normaliser of `schema`'s numbers, or None when there is nothing to normalise."""
    return _Compiler(schema).node(schema, ())


class _Compiler:
    """Turns a schema into nested closures; `$ref`s into the same document are followed."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, Normaliser | None] = {}
        self.pending: dict[str, list[Normaliser | None]] = {}

    def node(self, schema: Any, seen: tuple[str, ...]) -> Normaliser | None:
        if not isinstance(schema, dict):
            return None
        parts: list[Normaliser] = []
        scalar = _scalar(schema.get("type"))
        if scalar is not None:
            parts.append(scalar)
        for key in ("properties", "patternProperties", "additionalProperties"):
            if key in schema:
                members = self._members(schema, seen)
                if members is not None:
                    parts.append(members)
                break
        items = self._items(schema, seen)
        if items is not None:
            parts.append(items)
        for sub in schema.get("allOf", ()) if isinstance(schema.get("allOf"), list) else ():
            found = self.node(sub, seen)
            if found is not None:
                parts.append(found)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            found = self._ref(ref, seen)
            if found is not None:
                parts.append(found)
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]

        def all_of(value: Any) -> Any:
            for part in parts:
                value = part(value)
            return value

        return all_of

    def _members(self, schema: dict[str, Any], seen: tuple[str, ...]) -> Normaliser | None:
        named: dict[str, Normaliser] = {}
        for name, sub in (schema.get("properties") or {}).items():
            found = self.node(sub, seen)
            if found is not None:
                named[name] = found
        patterns: list[tuple[re.Pattern[str], Normaliser | None]] = []  # every one: they all
        for pattern, sub in (schema.get("patternProperties") or {}).items():  # exclude `extra`
            try:
                patterns.append((re.compile(pattern), self.node(sub, seen)))
            except re.error:  # a dialect Python lacks: the validator judged it already
                continue
        extra = self.node(schema.get("additionalProperties"), seen)
        if not named and not any(n for _, n in patterns) and extra is None:
            return None
        declared = set(schema.get("properties") or ())

        def members(value: Any) -> Any:
            if type(value) is not dict:
                return value
            for name, member in value.items():
                normalise = named.get(name)
                if normalise is not None:
                    value[name] = normalise(member)
                    continue
                matched = False
                for pattern, by_pattern in patterns:
                    if pattern.search(name):
                        matched = True
                        if by_pattern is not None:
                            member = value[name] = by_pattern(member)
                if extra is not None and not matched and name not in declared:
                    value[name] = extra(member)
            return value

        return members

    def _items(self, schema: dict[str, Any], seen: tuple[str, ...]) -> Normaliser | None:
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems")
        each = self.node(items, seen)
        leading = [self.node(sub, seen) for sub in prefix] if isinstance(prefix, list) else []
        if each is None and not any(leading):
            return None

        def elements(value: Any) -> Any:
            if type(value) is not list:
                return value
            for index, element in enumerate(value):
                normalise = leading[index] if index < len(leading) else each
                if normalise is not None:
                    value[index] = normalise(element)
            return value

        return elements

    def _ref(self, ref: str, seen: tuple[str, ...]) -> Normaliser | None:
        if not ref.startswith("#"):
            return None  # another document: not resolved here
        if ref in seen:  # recursive schema: look the compiled node up when it runs
            return lambda value: (self.refs.get(ref) or _same)(value)
        if ref not in self.refs:
            target = _resolve(self.root, ref)
            self.refs[ref] = self.node(target, (*seen, ref))
        return self.refs[ref]


def _same(value: Any) -> Any:
    return value


def _scalar(declared: Any) -> Normaliser | None:
    types = {declared} if isinstance(declared, str) else set(declared or ())
    if "integer" in types and "number" not in types:
        return _to_int
    if "number" in types and "integer" not in types:
        return _to_float
    return None


def _resolve(root: Any, ref: str) -> Any:
    """The schema at a JSON Pointer fragment (`#/$defs/item`), or None."""
    node = root
    for raw in ref[1:].lstrip("/").split("/") if ref != "#" else ():
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
