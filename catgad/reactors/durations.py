"""Durations as users write them: `30s`, `15m`, `24h`, `2d`, `500ms`, `1h30m`, or ISO 8601
(`PT24H`)."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_SHORT = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+$")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUM = r"\d+(\.\d+)?"
PATTERN = rf"^(({_NUM}\s*(ms|s|m|h|d)\s*)+|P({_NUM}D)?(T({_NUM}H)?({_NUM}M)?({_NUM}S)?)?)$"
"""For the JSON Schema: what `parse` accepts (a bare number of seconds is accepted too)."""


def parse_duration(value: object) -> float:
    """Seconds; ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 15m, 24h, 2d or PT24H, not {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    if isinstance(value, str):
        if _SHORT.match(value):  # 30s, 24h, 1h30m
            return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
        iso = _ISO.match(value.strip())
        if iso and value.strip() not in ("P", "PT") and not value.strip().endswith("T"):
            parts = iso.groupdict()
            return sum(float(parts[k] or 0) * _UNITS[k] for k in ("d", "h", "m", "s"))
    raise ValueError(f"expected a duration such as 30s, 15m, 24h, 2d or PT24H, not {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest of the short forms that says it exactly (for diagrams and messages)."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
