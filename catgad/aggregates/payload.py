"""Validating a command's data against its JSON Schema, every violation reported."""

from __future__ import annotations

from typing import Any

from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from catgad.errors import FieldError, InvalidPayload


def _pointer(error: ValidationError) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        # point at the missing member, not at its parent
        missing = _missing_name(error)
        if missing is not None:
            parts.append(missing)
    return "/" + "/".join(parts) if parts else ""


def _missing_name(error: ValidationError) -> str | None:
    for name in error.validator_value or ():
        if isinstance(error.instance, dict) and name not in error.instance:
            return str(name)
    return None


def field_errors(validator: Validator, data: Any) -> list[FieldError]:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [FieldError(_pointer(e), e.message) for e in errors]


def check_payload(command: str, validator: Validator, data: Any) -> None:
    """Raise InvalidPayload naming each field that breaks the schema and why."""
    errors = field_errors(validator, data)
    if errors:
        listed = "; ".join(f"{e.pointer or '/'}: {e.message}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise InvalidPayload(f"{command}: {listed}{more}", errors)
