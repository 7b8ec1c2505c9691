"""Pure: a batch's operations folded to at most two per row, in three phases, same final rows.

Operations on different keys commute, so only each key's own sequence must
keep its meaning. Folded, a key's sequence is one of: update; upsert; delete;
update then upsert; or "replace" (a delete followed by an upsert: an upsert
of every column, defaults for those not set). Written as all deletes, then
all updates, then all upserts, each key still sees its sequence in order,
and operations of the same shape sit together for one executemany. An order
created, paid and shipped within one batch is one upsert instead of three
statements. tests/projections/test_coalesce.py checks the equivalence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from catgad.projections.mapping import Op

# per key: (kind, fields, update_first) with kind in update/upsert/delete/replace; update_first:
# the fields of an update that ran before the key's upsert (applies only to a row that existed)
_Folded = tuple[str, dict[str, Any], dict[str, Any] | None]


def coalesce(ops: Sequence[Op], defaults: Mapping[str, Any]) -> list[Op]:
    """The fewest operations with the same effect as `ops` applied in order."""
    if len(ops) < 2:
        return list(ops)
    folded: dict[str, _Folded] = {}
    get = folded.get
    for op in ops:  # _fold's two common cases inline: a catch-up folds every operation
        key, change = op.key, op.kind
        before = get(key)
        if before is None and change != "delete":
            folded[key] = (change, op.fields, None)  # never changed in place: no copy
        elif before is not None and change == "update" and before[0] != "delete":
            folded[key] = (before[0], {**before[1], **op.fields}, before[2])
        else:
            folded[key] = _fold(before, op, defaults)
    deletes: list[Op] = []
    updates: list[Op] = []
    upserts: list[Op] = []
    for key, (kind, fields, update_first) in folded.items():
        if kind == "delete":
            deletes.append(Op("delete", key, {}))
        elif kind == "update":
            updates.append(Op("update", key, fields))
        else:  # upsert, replace
            if update_first is not None:
                updates.append(Op("update", key, update_first))
            upserts.append(Op("upsert", key, fields))
    upserts.sort(key=_shape)  # stable: same-shaped operations together, in order
    updates.sort(key=_shape)
    return [*deletes, *updates, *upserts]


def _shape(op: Op) -> tuple[str, ...]:
    return tuple(op.fields)


def _fold(before: _Folded | None, op: Op, defaults: Mapping[str, Any]) -> _Folded:
    if op.kind == "delete":
        return ("delete", {}, None)
    if before is None:
        return (op.kind, op.fields, None)
    kind, fields, update_first = before
    if kind == "delete":
        if op.kind == "update":
            return before  # the row is gone: an update changes nothing
        return ("replace", {**defaults, **op.fields}, None)
    if kind == "update" and op.kind == "upsert":
        return ("upsert", dict(op.fields), fields)
    return (kind, {**fields, **op.fields}, update_first)
