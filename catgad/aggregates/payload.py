"""Validating command and event data against their JSON Schemas, every violation reported."""

from __future__ import annotations

from typing import Any, cast

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from catgad.aggregates.numbers import number_normaliser
from catgad.errors import FieldError, InvalidPayload


class PayloadSchema:
    """A payload schema compiled twice: Rust for the per-command yes/no, Python for messages.

    jsonschema-rs answers `is_valid` in well under a microsecond, which keeps
    validation off the hot path; only a payload that fails pays for the
    Python validator's richer, positioned messages. Data that passes is then
    normalised (`normalise`): its numbers become the int or float the schema
    declares, which is what every rule sees and what is stored.
    """

    __slots__ = ("_fast", "_normaliser", "full", "schema")

    def __init__(self, schema: dict[str, Any], full: Validator) -> None:
        self.schema = schema
        self.full = full
        self._fast = jsonschema_rs.validator_for(schema, validate_formats=True)
        self._normaliser = number_normaliser(schema)

    def normalise(self, data: Any) -> Any:
        """`data` (valid) with its numbers as the schema declares them; changed in place."""
        normaliser = self._normaliser
        return data if normaliser is None else normaliser(data)

    def is_valid(self, data: Any) -> bool:
        return bool(self._fast.is_valid(data))

    def errors(self, data: Any) -> list[FieldError]:
        if self.is_valid(data):
            return []
        found = sorted(self.full.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
        if found:
            return [FieldError(_pointer(e), _shorten(e.message)) for e in found]
        # the two engines' regex dialects may disagree: trust the one that said no
        return [
            FieldError(_join(list(e.instance_path)), _shorten(e.message))
            for e in self._fast.iter_errors(data)
        ]


# A message quotes the value it is about; a long value is cut in the middle, keeping the
# verdict at the end ("'xxx … xxx' is too long"): an answer never echoes a whole body.
_MESSAGE_MAX = 200
_MESSAGE_KEEP = 90


def _shorten(message: str) -> str:
    if len(message) <= _MESSAGE_MAX:
        return message
    cut = len(message) - 2 * _MESSAGE_KEEP
    return f"{message[:_MESSAGE_KEEP]} … ({cut} characters) … {message[-_MESSAGE_KEEP:]}"


def _join(parts: list[Any]) -> str:
    escaped = [str(p).replace("~", "~0").replace("/", "~1") for p in parts]
    return "/" + "/".join(escaped) if escaped else ""


def _pointer(error: ValidationError) -> str:
    parts: list[Any] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # point at the missing member, not at its parent: one error per missing member, its
        # name first in the message ("'qty' is a required property")
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [name for name in required if name not in error.instance]
        named = [name for name in missing if error.message.startswith(f"{name!r} ")]
        if named or missing:
            parts.append((named or missing)[0])
    return _join(parts)


# What a store can keep of an integer: JSON readers and orjson stop at 64 bits.
_INT_RANGE = (-(2**63), 2**64 - 1)


def _fits(value: Any) -> bool:
    """Whether every integer in `value` fits 64 bits, as orjson sees it (the same range):
    one call in C rather than a walk in Python; only a failure is walked for its pointer."""
    try:
        orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a big integer, or something not JSON at all
        return False
    return True


def beyond_64_bits(value: Any, at: str = "") -> str | None:
    """The JSON Pointer of the first integer no store can keep, if any (`value` nests as
    deep as the recursion limit allows: an HTTP body at most 128 levels)."""
    if not at and _fits(value):
        return None
    kind = type(value)
    if kind is int:
        return None if _INT_RANGE[0] <= value <= _INT_RANGE[1] else at or "/"
    if kind is dict:
        for key, member in value.items():
            found = beyond_64_bits(member, f"{at}/{_join([key])[1:]}")
            if found is not None:
                return found
    elif kind is list:
        for index, member in enumerate(value):
            found = beyond_64_bits(member, f"{at}/{index}")
            if found is not None:
                return found
    return None


def check_payload(command: str, schema: PayloadSchema, data: Any) -> Any:
    """`data` normalised (see PayloadSchema.normalise); InvalidPayload naming each field that
    breaks the schema and why, or holds an integer beyond 64 bits, or saying that it nests
    too deep for the checks (which recurse in Python) to walk it."""
    try:
        if schema.is_valid(data):
            data = schema.normalise(data)
            pointer = beyond_64_bits(data)
            if pointer is not None:
                why = "an integer beyond 64 bits cannot be stored"
                raise InvalidPayload(f"{command}: {pointer}: {why}", [FieldError(pointer, why)])
            return data
        errors = schema.errors(data)
    except RecursionError:
        why = "the data nests too deep to be checked"
        raise InvalidPayload(f"{command}: {why}", [FieldError("", why)]) from None
    listed = "; ".join(f"{e.pointer or '/'}: {e.message}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    raise InvalidPayload(f"{command}: {listed}{more}", errors)


def payload_validator(schema: dict[str, Any]) -> PayloadSchema:
    """A validator for command/event data; `format` is checked, as users expect."""
    return PayloadSchema(
        schema,
        cast(
            Validator,
            Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER),
        ),
    )
