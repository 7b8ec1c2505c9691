"""Loads a catgad config: YAML with positions → JSON Schema → each section built → checks.

Every stage reports into one Reporter, so a broken config lists all of its
issues at once, each at its file:line:col. A definition the schema rejects is
left out of the later stages (its name still counts as declared), so one
mistake is not echoed by the checks that depend on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from catgad.app.registry import SECTIONS
from catgad.app.schema import SCHEMA
from catgad.config.describe import check_document
from catgad.config.loader import load_document
from catgad.config.section import Building, Linting, prune
from catgad.errors import ConfigError
from catgad.model import Config

_NAMED = frozenset(s.key for s in SECTIONS if s.named)
_PAYLOADS = tuple(s.key for s in SECTIONS if s.payloads)
_TYPED = ("service", "store", "bus", "handlers", "aggregates", "commands", "events")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load and check a config; raises ConfigError carrying every issue found."""
    doc = load_document(path, os.environ if env is None else env)
    reporter = doc.reporter
    if not doc.complete:  # a file is missing or unparsable: later checks would only guess
        raise ConfigError(reporter.issues)
    bad = check_document(doc.data, SCHEMA, reporter, _PAYLOADS)
    data, broken = prune(doc.data, bad, _NAMED)
    building = Building(data, reporter, os.fspath(path))
    for section in SECTIONS:
        building.values[section.key] = section.build(data.get(section.key), building)
    checks = Linting(building, broken)
    for section in SECTIONS:
        if section.lint is not None:
            section.lint(data.get(section.key), building.values[section.key], checks)
    if reporter.issues:
        raise ConfigError(reporter.issues)
    values = building.values
    return Config(
        path=os.fspath(path),
        version=int(data.get("catgad", 1)),
        service=values["service"],
        store=values["store"],
        bus=values["bus"],
        handlers=values["handlers"],
        aggregates=values["aggregates"],
        commands=values["commands"],
        events=values["events"],
        sections={k: v for k, v in values.items() if k not in _TYPED},
    )
