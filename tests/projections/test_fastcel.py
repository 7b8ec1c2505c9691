"""Property: the fast CEL subset gives CEL's answers, or leaves the question to CEL."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catgad.config.cel import CelEvalError, CelExpr
from catgad.config.fastcel import compile_fast, evaluate

EXPRESSIONS = [
    "data.items.map(i, i.qty * i.price).sum()",
    "row.total + data.by",
    "row.total - data.by * 2",
    "data.by / data.n",
    "data.by % data.n",
    "-data.by",
    "has(data.group) && data.group != ''",
    "has(data.group) || data.by > 3",
    "data.by > data.n ? 'big' : 'small'",
    "!(data.by == data.n)",
    "data.by < data.n",
    "data.by >= 2.5",
    "size(data.items) + size(data.name)",
    "data.items.filter(i, i.qty > 1).map(i, i.price)",
    "int(data.name) + 1",
    "double(data.by) * 1.5",
    "string(data.by) + data.name",
    "data.items[0].qty",
    "[data.by, data.n] + [1]",
    "{'a': data.by, 'b': [data.name]}",
    "data.name + '-' + data.name",
    "data.missing.deeper",
    "data.by == data.name",
    "'x' == data.group",
]
numbers = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-10, 10),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
scalars = st.one_of(numbers, st.text(max_size=4), st.sampled_from(["12", "-3", "x"]), st.none())
item = st.fixed_dictionaries({"qty": st.one_of(st.integers(-3, 5), scalars), "price": numbers})
data = st.fixed_dictionaries(
    {"by": scalars, "n": scalars, "name": scalars, "items": st.lists(item, max_size=3)},
    optional={"group": scalars},
)


def outcome(run: Any) -> tuple[str, Any]:
    try:
        value = run()
    except (CelEvalError, IndexError):  # IndexError: the runtime's own, for list[n] past the end
        return ("error", None)
    # maps have no order in CEL; 1 and 1.0 must stay apart: sorted JSON tells both
    return ("value", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_every_listed_expression_compiles(source: str) -> None:
    if source != "data.missing.deeper":
        assert compile_fast(CelExpr(source)) is not None, source


@settings(max_examples=300, deadline=None)
@given(source=st.sampled_from(EXPRESSIONS), data=data, total=numbers)
def test_the_fast_path_agrees_with_cel(source: str, data: dict[str, Any], total: Any) -> None:
    expr = CelExpr(source)
    fast = compile_fast(expr)
    activation = {"data": data, "row": {"total": total}}
    assert outcome(lambda: evaluate(expr, fast, activation)) == outcome(
        lambda: expr.evaluate(activation)
    )
