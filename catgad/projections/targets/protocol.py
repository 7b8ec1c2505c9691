"""The read-model target seam: what every table target promises (see tests/contracts).

A table target (SQLite, PostgreSQL, Redis) keeps a projection's rows and, in
the same transaction as every change to them, its checkpoint: the store
position of the last event applied. `apply(ops, after=a, position=p)` moves
the checkpoint from exactly `a` to `p` or changes nothing and raises Fenced,
so two consumers that both believe they own a projection can never apply an
event twice. The checkpoint of a shadow (a rebuild) is kept the same way,
beside the live one, until `swap` makes the shadow the live read model.

Handler targets (webhook, plugin) are told each event instead; see
catgad.projections.targets.handler.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from catgad.projections.mapping import Op

State = Literal["running", "stopped", "failed"]
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Meta:
    """What a target records about its projection, shared by every daemon that uses it."""

    position: int  # checkpoint of the live read model
    state: State = "running"  # what an operator asked for (stopped) or a stop on poison (failed)
    error: str | None = None  # why it failed
    rebuild_position: int | None = None  # checkpoint of the shadow; None: no rebuild under way


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows in key order; `cursor` asks for the next page (None: that was all)."""

    rows: list[Row]
    cursor: str | None


@runtime_checkable
class ProjectionTarget(Protocol):
    """One projection's read model in one backend."""

    kind: str
    name: str  # the projection's name
    shadow: bool  # True for the view onto a rebuild's read model

    async def open(self) -> None:
        """Connect; create the table (and missing columns, indexes) and the checkpoint record."""

    async def close(self) -> None: ...

    async def meta(self) -> Meta: ...

    async def set_state(self, state: State, error: str | None = None) -> None: ...

    async def apply(self, ops: Sequence[Op], *, after: int, position: int) -> None:
        """Apply `ops` in order and move this read model's checkpoint from `after` to
        `position`, atomically. Fenced when the checkpoint is not `after`."""

    async def rows(self, keys: Collection[str]) -> dict[str, Row | None]:
        """Current fields (without the key) of each row, None for a missing one."""

    async def get(self, key: str) -> Row | None:
        """One row of the live read model, with its `key`."""

    async def find(
        self, column: str | None, value: Any, *, limit: int, cursor: str | None = None
    ) -> Page:
        """Rows whose indexed `column` equals `value` (every row when `column` is None),
        in key order, at most `limit`, after the row the cursor names."""

    async def begin_rebuild(self) -> None:
        """Discard any earlier shadow and start an empty one at checkpoint 0."""

    def shadow_target(self) -> ProjectionTarget:
        """The same target writing to the shadow: apply/rows/meta act on the rebuild."""

    async def swap(self, *, after: int) -> None:
        """Make the shadow (at checkpoint `after`, else Fenced) the live read model, atomically;
        the old one is discarded."""

    async def abort_rebuild(self) -> None:
        """Discard the shadow; the live read model is untouched."""


def encode_cursor(key: str) -> str:
    """The cursor of a page: the key of its last row, so that every string is one (the
    OpenAPI document can then say exactly which cursors are accepted)."""
    return key


def decode_cursor(cursor: str) -> str:
    """The key a cursor names; ValueError for one holding a NUL, which no key holds (written
    bodies refuse it) and PostgreSQL cannot compare."""
    if "\x00" in cursor:
        raise ValueError("a cursor holds no NUL character: it is the key of a row")
    return cursor


def page_of(rows: list[Row], limit: int) -> Page:
    """A page from up to limit + 1 rows fetched: the extra one says another page follows."""
    if len(rows) > limit:
        del rows[limit:]
        return Page(rows, encode_cursor(rows[-1]["key"]))
    return Page(rows, None)
