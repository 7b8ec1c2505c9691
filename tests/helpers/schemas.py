"""`from_schema`: hypothesis-jsonschema's strategy for the values a JSON Schema accepts, made
to work with the Hypothesis this project installs.

hypothesis-jsonschema 0.23.1 (the newest release) draws an object's members
through a private Hypothesis helper, `many`, calling its `more()`; Hypothesis
6.170 replaced that method by iteration (`with many(...) as elements: for _ in
elements:`), so every object schema fails with "'many' object has no attribute
'more'". The adapter below gives hypothesis-jsonschema's module (and only it)
the old method on top of the new helper. It is installed only when the helper
lacks `more`: a release of either library that agrees again makes it unused.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import hypothesis_jsonschema._from_schema as _from_schema
from hypothesis.internal.conjecture import utils as _cu
from hypothesis_jsonschema import from_schema

__all__ = ["from_schema"]


class _ManyWithMore:
    """The old `many` protocol (`while elements.more(): ...; elements.reject()`) over the new
    iterating one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._many = _cu.many(*args, **kwargs)
        self._many.__enter__()
        self._elements: Iterator[None] = iter(self._many)

    def more(self) -> bool:
        try:
            next(self._elements)
        except StopIteration:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


if not hasattr(_cu.many, "more"):
    _from_schema.cu = types.SimpleNamespace(many=_ManyWithMore)  # type: ignore[assignment,attr-defined]
