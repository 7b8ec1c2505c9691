"""What an aggregate's state is computed from, as one digest, so a snapshot knows when it is void.

A snapshot is state folded by the rules of the config that took it. When the
config's `initial`, its `on` rules, or the schema version and upcasters of an
event those rules read change, a replay from the first event no longer gives
that state: the snapshot must be ignored, and the engine replays instead (and
takes a new one in time). Users edit the YAML and restart; nothing else would
tell the old snapshots apart.

Upcasters written as plugins are named here, not their code: a change inside
a plugin that keeps its name is not seen (bump the event's `version` then).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from catgad.aggregates.model import AggregateDef, EventDef, UpcastStep


def rules_fingerprint(aggregate: AggregateDef, events: Mapping[str, EventDef]) -> str:
    """A short digest of `aggregate`'s initial state, its `on` rules and what they read."""
    doc = {
        "initial": aggregate.initial,
        "on": {
            name: {
                "set": {field: expr.source for field, expr in rule.set.items()},
                "unset": rule.unset,
            }
            for name, rule in aggregate.on.items()
        },
        "events": {
            name: _event(event) for name in aggregate.on if (event := events.get(name)) is not None
        },
    }
    digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS, default=str))
    return digest.hexdigest()[:16]


def _event(event: EventDef) -> dict[str, Any]:
    return {
        "version": event.version,
        "upcasters": {str(v): _step(step) for v, step in sorted(event.upcasters.items())},
    }


def _step(step: UpcastStep) -> dict[str, Any]:
    return {
        "rename": step.rename,
        "defaults": step.defaults,
        "set": {field: expr.source for field, expr in step.set.items()},
        "remove": step.remove,
        "handler": step.handler,
    }
