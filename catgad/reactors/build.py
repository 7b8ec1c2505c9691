"""What the reactor sections' builders share: a map of fields to CEL, compiled."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from catgad.config.cel import CelExpr
from catgad.config.loader import Path

Cel = Callable[[Any, Path], CelExpr | None]  # compile at a path, reporting a bad expression


def cel_map(raw: Mapping[str, Any], path: Path, cel: Cel) -> dict[str, CelExpr]:
    """field -> compiled CEL; a field whose CEL does not compile is reported and left out."""
    out: dict[str, CelExpr] = {}
    for field, source in raw.items():
        expr = cel(source, (*path, field))
        if expr is not None:
            out[field] = expr
    return out
