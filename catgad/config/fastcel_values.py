"""The values side of catgad.config.fastcel: CEL's arithmetic and functions, or Fallback.

Each function gives CEL's result for the cases it is sure of and raises
Fallback for anything else (mixed types, int64 overflow, division by zero,
conversions whose rules differ), so the caller asks CEL instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from catgad.config.cel import EXTRA_FUNCTIONS

INT64 = (-(2**63), 2**63 - 1)
_DECIMAL = re.compile(r"-?[0-9]+")


class Fallback(Exception):
    """Not sure to match CEL here: evaluate with CEL."""


def checked(value: int) -> int:
    if not INT64[0] <= value <= INT64[1]:
        raise Fallback
    return value


def arith(op: str, x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    if tx is int and ty is int:
        if op == "+":
            return checked(x + y)
        if op == "-":
            return checked(x - y)
        if op == "*":
            return checked(x * y)
        if y == 0:
            raise Fallback
        quotient = abs(x) // abs(y)
        if (x < 0) != (y < 0):
            quotient = -quotient
        return checked(quotient) if op == "/" else x - y * quotient  # truncated, as in C
    if tx is float and ty is float:
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/" and y != 0:
            return x / y
        raise Fallback  # % of doubles, division by zero (IEEE): CEL's rules
    if op == "+" and ((tx is str and ty is str) or (tx is list and ty is list)):
        return x + y
    raise Fallback


def _size(value: Any) -> int:
    if type(value) in (list, dict) or (type(value) is str and value.isascii()):
        return len(value)
    raise Fallback  # the runtime counts a string's UTF-8 bytes, the spec its code points


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str and _DECIMAL.fullmatch(value):
        return checked(int(value))
    raise Fallback  # doubles (rounding, range) and the rest: CEL's rules


def _to_double(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise Fallback


def _to_string(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if type(value) is bool:
        return "true" if value else "false"
    raise Fallback


def _summed(items: Any) -> Any:
    if type(items) is not list or not items:
        raise Fallback
    first = type(items[0])
    if first not in (int, float):
        raise Fallback
    for item in items:
        if type(item) is not first:
            raise Fallback
    total = _SUM(items)
    return checked(total) if first is int else total


_SUM = EXTRA_FUNCTIONS["sum"]


FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "size": _size,
    "int": _to_int,
    "double": _to_double,
    "string": _to_string,
    "sum": _summed,
}
