"""Property: a batch's operations, coalesced per key, leave exactly the rows the batch would."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from catgad.projections.coalesce import coalesce
from catgad.projections.mapping import Op

DEFAULTS = {"a": 0, "b": None, "c": "x"}
fields = st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=3)
ops = st.lists(
    st.builds(Op, st.sampled_from(["upsert", "update", "delete"]), st.sampled_from("pqr"), fields),
    max_size=30,
)
Rows = dict[str, dict[str, Any] | None]


def run(batch: list[Op], rows: Rows) -> Rows:
    rows = dict(rows)
    for op in batch:
        current = rows.get(op.key)
        if op.kind == "delete":
            rows[op.key] = None
        elif op.kind == "upsert":
            rows[op.key] = {**(current or DEFAULTS), **op.fields}
        elif current is not None:
            rows[op.key] = {**current, **op.fields}
    return rows


@settings(max_examples=500)
@given(
    batch=ops, existing=st.dictionaries(st.sampled_from("pqr"), st.just({"a": 9, "b": 9, "c": "y"}))
)
def test_coalesced_operations_leave_the_same_rows(batch: list[Op], existing: Rows) -> None:
    folded = coalesce(batch, DEFAULTS)
    assert run(folded, existing) == run(batch, existing)
    assert len(folded) <= len(batch)
    kinds = [op.kind for op in folded]
    assert kinds == sorted(kinds, key=["delete", "update", "upsert"].index)  # the three phases


def test_an_order_created_paid_and_shipped_is_one_upsert() -> None:
    batch = [
        Op("upsert", "o1", {"a": 1, "c": "created"}),
        Op("update", "o1", {"c": "paid"}),
        Op("update", "o1", {"c": "shipped", "b": 5}),
    ]
    assert coalesce(batch, DEFAULTS) == [Op("upsert", "o1", {"a": 1, "c": "shipped", "b": 5})]
