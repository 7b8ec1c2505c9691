"""JSON Schema helpers the reactor sections share: the config core's (catgad.config.fragments)."""

from __future__ import annotations

from catgad.config.fragments import IDENT, Schema, closed, ref

__all__ = ["IDENT", "Schema", "closed", "ref"]
