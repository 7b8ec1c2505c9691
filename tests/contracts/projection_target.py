"""The read-model target contract: every table target passes these; what is untested is unpromised.

Subclass ProjectionTargetContract once per backend and implement storage(): an
async context manager yielding `open_target(projection) -> target`, every
target it opens living in the same storage (file, schema, key prefix),
private to the test and removed after it. Targets it opened are closed by it.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from catgad.errors import Fenced
from catgad.projections.mapping import Op
from catgad.projections.model import ColumnDef, ProjectionDef, TargetConfig
from catgad.projections.targets.protocol import ProjectionTarget

OpenTarget = Callable[[ProjectionDef], Awaitable[ProjectionTarget]]

COLUMNS = {
    "name": ColumnDef("name", "string", index=True),
    "n": ColumnDef("n", "integer", 0, index=True),
    "score": ColumnDef("score", "number"),
    "flag": ColumnDef("flag", "boolean", False, index=True),
    "doc": ColumnDef("doc", "json"),
}


def projection(
    name: str = "things", columns: dict[str, ColumnDef] | None = None, kind: str = "sqlite"
) -> ProjectionDef:
    """A projection of these columns; the contract drives targets with operations directly."""
    target = TargetConfig(kind=kind, table=name)  # type: ignore[arg-type]
    return ProjectionDef(name=name, target=target, columns=dict(columns or COLUMNS))


def upsert(key: str, **fields: Any) -> Op:
    return Op("upsert", key, fields)


def update(key: str, **fields: Any) -> Op:
    return Op("update", key, fields)


def delete(key: str) -> Op:
    return Op("delete", key, {})


def full(key: str, **fields: Any) -> dict[str, Any]:
    """A row as `get` returns it: the key, then every column (default when unset)."""
    row: dict[str, Any] = {"key": key}
    for name, column in COLUMNS.items():
        row[name] = fields.get(name, column.default)
    return row


async def everything(target: ProjectionTarget, page: int = 1000) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        found = await target.find(None, None, limit=page, cursor=cursor)
        rows.extend(found.rows)
        if found.cursor is None:
            return rows
        cursor = found.cursor


class ProjectionTargetContract(abc.ABC):
    @abc.abstractmethod
    def storage(self) -> AbstractAsyncContextManager[OpenTarget]:
        """Yields open_target(projection); storage private to the test, removed after."""

    # -- checkpoint and state -----------------------------------------------------------------

    async def test_a_new_target_starts_at_zero_and_running(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            meta = await target.meta()
            assert (meta.position, meta.state, meta.error, meta.rebuild_position) == (
                0, "running", None, None,
            )  # fmt: skip
            assert await everything(target) == []

    async def test_apply_moves_the_checkpoint_with_the_rows(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.apply([upsert("a", name="x")], after=0, position=3)
            assert (await target.meta()).position == 3
            await target.apply([], after=3, position=7)  # nothing to change: still moves
            assert (await target.meta()).position == 7
            assert await target.get("a") == full("a", name="x")

    async def test_a_stale_writer_is_fenced_and_changes_nothing(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.apply([upsert("a", n=1)], after=0, position=1)
            with pytest.raises(Fenced) as caught:
                await target.apply([upsert("a", n=99), upsert("b", n=2)], after=0, position=2)
            assert caught.value.actual == 1
            assert await everything(target) == [full("a", n=1)]
            assert (await target.meta()).position == 1

    async def test_two_writers_from_one_checkpoint_exactly_one_wins(self) -> None:
        async with self.storage() as open_target:
            first = await open_target(projection())
            second = await open_target(projection())
            results = await asyncio.gather(
                first.apply([upsert("a", n=1)], after=0, position=1),
                second.apply([upsert("b", n=2)], after=0, position=1),
                return_exceptions=True,
            )
            assert sum(isinstance(r, Fenced) for r in results) == 1
            assert len(await everything(first)) == 1

    async def test_state_and_error_are_kept(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.set_state("failed", "event e1: boom")
            again = await open_target(projection())
            meta = await again.meta()
            assert (meta.state, meta.error) == ("failed", "event e1: boom")
            await again.set_state("running")
            meta = await target.meta()
            assert (meta.state, meta.error) == ("running", None)

    # -- rows -----------------------------------------------------------------------------

    async def test_upsert_update_delete(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            ops = [
                upsert("a", name="first", n=1),
                update("missing", name="never"),  # no row: nothing happens
                upsert("b", score=1.5),
                update("a", n=2),  # only n changes
                upsert("a", flag=True),  # an existing row: only flag changes
                delete("b"),
                delete("nothing-here"),
                upsert("c"),  # a row of defaults
            ]
            await target.apply(ops, after=0, position=1)
            assert await everything(target) == [
                full("a", name="first", n=2, flag=True),
                full("c"),
            ]
            assert await target.get("b") is None
            assert await target.get("missing") is None

    async def test_values_keep_their_types(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            doc = {"items": [1, 2.5, "x", None, True], "nested": {"a": {"b": []}}}
            big = 2**63 - 1
            await target.apply(
                [
                    upsert("t", name="héllo ✓ 'quoted'", n=big, score=-0.25, flag=True, doc=doc),
                    upsert("z", name=None, n=None, score=None, flag=None, doc=None),
                    upsert("e", name="", n=-(2**63), score=3.0, flag=False, doc=[]),
                ],
                after=0,
                position=1,
            )
            row = await target.get("t")
            assert row == full("t", name="héllo ✓ 'quoted'", n=big, score=-0.25, flag=True, doc=doc)
            assert row is not None and isinstance(row["score"], float)
            assert row["flag"] is True
            assert await target.get("z") == {"key": "z", **dict.fromkeys(COLUMNS)}
            e = await target.get("e")
            assert e == full("e", name="", n=-(2**63), score=3.0, flag=False, doc=[])
            assert e is not None and e["flag"] is False and isinstance(e["score"], float)

    async def test_keys_may_hold_any_text(self) -> None:
        keys = ["a:b", "with space", "ünï©ødé", "100%", "quote'\"", "a/b/c", "*?[x]", "0"]
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.apply([upsert(k, name=k) for k in keys], after=0, position=1)
            for key in keys:
                assert await target.get(key) == full(key, name=key)
            found = await everything(target, page=3)
            assert sorted(r["key"] for r in found) == sorted(keys)

    async def test_rows_reads_many_keys_at_once(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            keys = [f"k{i:05d}" for i in range(1200)]
            await target.apply([upsert(k, n=i) for i, k in enumerate(keys)], after=0, position=1)
            rows = await target.rows([*keys, "absent", keys[0]])
            assert rows["absent"] is None
            assert rows["k00007"] == {**{k: v for k, v in full("k", n=7).items() if k != "key"}}
            assert all(rows[k] is not None for k in keys)

    # -- queries --------------------------------------------------------------------------

    async def test_find_by_indexed_column_in_key_order_with_a_cursor(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            ops = [
                upsert(f"k{i}", name="even" if i % 2 == 0 else "odd", n=i % 3) for i in range(10)
            ]
            await target.apply(ops, after=0, position=1)
            page = await target.find("name", "even", limit=2)
            assert [r["key"] for r in page.rows] == ["k0", "k2"]
            assert page.cursor is not None
            page = await target.find("name", "even", limit=2, cursor=page.cursor)
            assert [r["key"] for r in page.rows] == ["k4", "k6"]
            page = await target.find("name", "even", limit=2, cursor=page.cursor)
            assert [r["key"] for r in page.rows] == ["k8"] and page.cursor is None
            by_n = await target.find("n", 0, limit=100)
            assert [r["key"] for r in by_n.rows] == ["k0", "k3", "k6", "k9"]
            assert (await target.find("name", "none", limit=5)).rows == []
            flagged = await target.find("flag", False, limit=100)
            assert len(flagged.rows) == 10  # the default is indexed too

    async def test_an_index_follows_updates_and_deletes(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.apply(
                [upsert("a", name="x"), upsert("b", name="x"), upsert("c", name="y")],
                after=0,
                position=1,
            )
            await target.apply(
                [update("a", name="y"), delete("b"), upsert("c", name="x"), upsert("c", n=5)],
                after=1,
                position=2,
            )
            assert [r["key"] for r in (await target.find("name", "x", limit=10)).rows] == ["c"]
            assert [r["key"] for r in (await target.find("name", "y", limit=10)).rows] == ["a"]
            assert [r["key"] for r in (await target.find("n", 5, limit=10)).rows] == ["c"]

    # -- rebuild --------------------------------------------------------------------------

    async def test_a_rebuild_fills_a_shadow_then_swaps(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.apply([upsert("old", name="x"), upsert("both", n=1)], after=0, position=5)
            await target.begin_rebuild()
            assert (await target.meta()).rebuild_position == 0
            shadow = target.shadow_target()
            await shadow.apply([upsert("both", n=2), upsert("new", name="x")], after=0, position=4)
            # the live read model is untouched and still takes writes
            assert await everything(target) == [full("both", n=1), full("old", name="x")]
            assert await shadow.rows(["new", "old"]) == {
                "new": {k: v for k, v in full("new", name="x").items() if k != "key"},
                "old": None,
            }
            with pytest.raises(Fenced):
                await target.swap(after=3)
            await shadow.apply([], after=4, position=6)
            await target.swap(after=6)
            meta = await target.meta()
            assert (meta.position, meta.rebuild_position) == (6, None)
            assert await everything(target) == [full("both", n=2), full("new", name="x")]
            assert [r["key"] for r in (await target.find("name", "x", limit=9)).rows] == ["new"]
            await target.apply([upsert("after", n=3)], after=6, position=7)  # live again
            assert await target.get("after") == full("after", n=3)

    async def test_a_new_rebuild_discards_the_unfinished_one(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.begin_rebuild()
            await target.shadow_target().apply([upsert("stale", n=1)], after=0, position=3)
            await target.begin_rebuild()
            assert (await target.meta()).rebuild_position == 0
            assert await target.shadow_target().rows(["stale"]) == {"stale": None}
            await target.abort_rebuild()
            assert (await target.meta()).rebuild_position is None
            assert await everything(target) == []

    async def test_a_rebuild_survives_reopening(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.begin_rebuild()
            await target.shadow_target().apply([upsert("s", n=1)], after=0, position=2)
            again = await open_target(projection())  # a restarted daemon
            assert (await again.meta()).rebuild_position == 2
            await again.swap(after=2)
            assert await everything(again) == [full("s", n=1)]

    # -- schema ---------------------------------------------------------------------------

    async def test_reopening_with_a_new_column_adds_it(self) -> None:
        async with self.storage() as open_target:
            target = await open_target(projection())
            await target.apply([upsert("a", n=1)], after=0, position=1)
            wider = {**COLUMNS, "extra": ColumnDef("extra", "string", "none", index=True)}
            again = await open_target(projection(columns=wider))
            assert await again.get("a") == {**full("a", n=1), "extra": "none"}
            await again.apply([upsert("b", extra="yes")], after=1, position=2)
            assert [r["key"] for r in (await again.find("extra", "yes", limit=5)).rows] == ["b"]

    async def test_projections_share_storage_without_meeting(self) -> None:
        async with self.storage() as open_target:
            one = await open_target(projection("one"))
            two = await open_target(projection("two"))
            await one.apply([upsert("a", n=1)], after=0, position=4)
            assert await everything(two) == [] and (await two.meta()).position == 0
            await two.apply([upsert("a", n=2)], after=0, position=1)
            assert (await one.get("a")) == full("a", n=1)
