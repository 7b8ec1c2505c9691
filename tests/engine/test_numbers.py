"""Numbers as their schema declares them (catgad.aggregates.numbers), and what the engine makes
of it: an integral float in an `integer` field is stored as an int, and a command whose event
the aggregate's rule cannot apply is refused with nothing stored."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from catgad.aggregates.numbers import number_normaliser
from catgad.app.load import load_config
from catgad.engine.commands import CommandEngine
from catgad.errors import EventRuleFailed
from catgad.model import Config
from catgad.store.memory import MemoryStore

EXAMPLE = Path(__file__).parents[2] / "config" / "examples" / "orders.yaml"


def normalised(schema: Any, data: Any) -> Any:
    normalise = number_normaliser(schema)
    assert normalise is not None
    return normalise(data)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON: 5 and 5.0 compare equal in Python, their JSON does not."""
    return orjson.dumps(a) == orjson.dumps(b)


# -- number_normaliser ------------------------------------------------------------------------


def test_integer_and_number_fields() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "x": {"type": "number"}, "s": {"type": "string"}},
    }
    data = {"n": 5.0, "x": 5, "s": "5.0", "other": 5.0}
    out = normalised(schema, data)
    assert out is data  # in place, and returned
    assert same(out, {"n": 5, "x": 5.0, "s": "5.0", "other": 5.0})  # undeclared: untouched
    assert type(out["n"]) is int and type(out["x"]) is float


def test_what_is_already_right_or_not_integral_stays() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}}}
    assert same(normalised(schema, {"n": 7, "x": 2.5}), {"n": 7, "x": 2.5})
    # 5.5 in an integer field breaks the schema: the validator refuses it, not the normaliser
    assert same(normalised(schema, {"n": 5.5, "x": "a"}), {"n": 5.5, "x": "a"})


def test_a_bare_scalar_schema() -> None:
    assert type(normalised({"type": "integer"}, 3.0)) is int
    assert type(normalised({"type": "number"}, 3)) is float


def test_nested_properties() -> None:
    schema = {
        "type": "object",
        "properties": {
            "order": {
                "type": "object",
                "properties": {"line": {"properties": {"qty": {"type": "integer"}}}},
            }
        },
    }
    assert same(
        normalised(schema, {"order": {"line": {"qty": 2.0}}}), {"order": {"line": {"qty": 2}}}
    )


def test_array_items() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"qty": {"type": "integer"}, "price": {"type": "integer"}},
                },
            }
        },
    }
    data = {"items": [{"qty": 2, "price": 5.0}, {"qty": 1.0, "price": 1250}]}
    assert same(
        normalised(schema, data), {"items": [{"qty": 2, "price": 5}, {"qty": 1, "price": 1250}]}
    )
    assert same(normalised({"type": "array", "items": {"type": "number"}}, [1, 2.5]), [1.0, 2.5])


def test_prefix_items_then_items() -> None:
    schema = {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "number"}, {"type": "string"}],
        "items": {"type": "integer"},
    }
    assert same(normalised(schema, [1.0, 2, "3", 4.0, 5.0]), [1, 2.0, "3", 4, 5])
    assert same(normalised(schema, [1.0]), [1])  # shorter than the prefix
    # draft 4-7 tuple form: items as a list, additionalItems for the rest
    old = {"type": "array", "items": [{"type": "number"}], "additionalItems": {"type": "integer"}}
    assert same(normalised(old, [1, 2.0, 3.0]), [1.0, 2, 3])


def test_additional_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "x": {"type": "number"}},
        "additionalProperties": {"type": "integer"},
    }
    data = {"name": "a", "x": 1, "a": 1.0, "b": 2.0}
    assert same(normalised(schema, data), {"name": "a", "x": 1.0, "a": 1, "b": 2})


def test_pattern_properties() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^n_": {"type": "integer"}, "^x_": {"type": "number"}},
        "additionalProperties": {"type": "string"},
    }
    data = {"n_a": 1.0, "x_a": 1, "other": 1.0}
    # additionalProperties only applies to names no pattern matched
    assert same(normalised(schema, data), {"n_a": 1, "x_a": 1.0, "other": 1.0})


def test_additional_properties_only_for_names_no_pattern_matched() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^n_": {"type": "integer"}},
        "additionalProperties": {"type": "number"},
    }
    assert same(normalised(schema, {"n_a": 1.0, "z": 1}), {"n_a": 1, "z": 1.0})


def test_a_pattern_without_numbers_still_keeps_additional_properties_off() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^v_": {"type": ["integer", "number"]}},  # either is right
        "additionalProperties": {"type": "integer"},
    }
    assert same(normalised(schema, {"v_a": 5.0, "z": 5.0}), {"v_a": 5.0, "z": 5})


def test_all_of() -> None:
    schema = {
        "allOf": [
            {"type": "object", "properties": {"n": {"type": "integer"}}},
            {"properties": {"x": {"type": "number"}}},
        ]
    }
    assert same(normalised(schema, {"n": 3.0, "x": 3}), {"n": 3, "x": 3.0})


def test_local_ref() -> None:
    schema = {
        "type": "object",
        "$defs": {
            "cents": {"type": "integer"},
            "line": {"properties": {"p": {"$ref": "#/$defs/cents"}}},
        },
        "properties": {
            "total": {"$ref": "#/$defs/cents"},
            "lines": {"items": {"$ref": "#/$defs/line"}},
        },
    }
    data = {"total": 10.0, "lines": [{"p": 5.0}, {"p": 5}]}
    assert same(normalised(schema, data), {"total": 10, "lines": [{"p": 5}, {"p": 5}]})


def test_recursive_ref() -> None:
    schema = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
        "$ref": "#/$defs/node",
    }
    tree = {"value": 1.0, "children": [{"value": 2.0, "children": [{"value": 3.0}]}]}
    out = normalised(schema, tree)
    assert same(out, {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]})
    root = {"type": "object", "properties": {"n": {"type": "integer"}, "more": {"$ref": "#"}}}
    nested = {"n": 1.0, "more": {"n": 2.0, "more": {"n": 3.0}}}
    assert same(normalised(root, nested), {"n": 1, "more": {"n": 2, "more": {"n": 3}}})


def test_a_ref_elsewhere_is_not_followed() -> None:
    schema = {"type": "object", "properties": {"n": {"$ref": "other.json#/cents"}}}
    assert number_normaliser(schema) is None


def test_nullable_integer() -> None:
    schema = {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}}
    assert same(normalised(schema, {"n": 4.0}), {"n": 4})
    assert same(normalised(schema, {"n": None}), {"n": None})
    # both integer and number: either is right, nothing is changed
    both = {"type": "object", "properties": {"n": {"type": ["integer", "number"]}}}
    assert number_normaliser(both) is None


def test_booleans_are_never_numbers() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "x": {"type": "number"}},
        "additionalProperties": {"type": "number"},
    }
    out = normalised(schema, {"n": True, "x": False, "y": True})
    assert out == {"n": True, "x": False, "y": True}
    assert all(type(v) is bool for v in out.values())


def test_negative_zero_becomes_zero() -> None:
    out = normalised({"type": "integer"}, -0.0)
    assert type(out) is int and out == 0 and orjson.dumps(out) == b"0"
    assert math.copysign(1, normalised({"type": "number"}, 0)) == 1.0


def test_a_big_int_in_a_number_field_keeps_every_digit() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "number"}}}
    big = 2**53 + 1  # float(big) == 2**53: a digit would be lost
    out = normalised(schema, {"x": big})
    assert type(out["x"]) is int and out["x"] == big
    exact = normalised(schema, {"x": 2**53})  # the last int a float holds exactly
    assert type(exact["x"]) is float and exact["x"] == 2**53
    assert type(normalised(schema, {"x": -(2**53) - 1})["x"]) is int


def test_a_big_integral_float_in_an_integer_field() -> None:
    out = normalised({"type": "integer"}, 1e18)
    assert type(out) is int and out == 10**18


def test_an_integral_float_beyond_64_bits_stays_a_float() -> None:
    """No store keeps such an int: as a float it is stored (and a rule mixing it with ints
    refuses the command, 422, instead of a 500 at the store)."""
    out = normalised({"type": "integer"}, 1e20)
    assert type(out) is float and out == 1e20
    assert type(normalised({"type": "integer"}, -(2.0**63))) is int
    assert type(normalised({"type": "integer"}, 2.0**63)) is float


def test_a_schema_without_numbers_needs_no_normaliser() -> None:
    assert number_normaliser({"type": "object", "properties": {"s": {"type": "string"}}}) is None
    assert number_normaliser({"type": "object", "properties": {"items": {"type": "array"}}}) is None
    assert number_normaliser({}) is None
    assert number_normaliser(True) is None
    assert number_normaliser({"anyOf": [{"type": "integer"}, {"type": "string"}]}) is None


def test_values_of_another_shape_are_left_alone() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
    }
    assert normalised(schema, [1.0]) == [1.0]  # not an object
    assert same(normalised(schema, {"items": {"a": 1.0}}), {"items": {"a": 1.0}})  # not a list
    assert normalised(schema, "text") == "text"


# -- the engine: the issue on the orders example, without a daemon --------------------------


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    opened = MemoryStore()
    await opened.open()
    yield opened
    await opened.close()


async def test_an_integral_float_price_is_stored_as_an_int(store: MemoryStore) -> None:
    config = load_config(EXAMPLE, env={"CATGAD_REDIS_PROJECTIONS": "false"})
    engine = CommandEngine(config, store)
    order = {"order_id": "o1", "customer": "alice", "items": [{"sku": "b", "qty": 2, "price": 5.0}]}
    result = await engine.execute("CreateOrder", order)
    assert result.version == 1
    stored = await store.read("Order-o1")
    price = stored[0].data["items"][0]["price"]
    assert type(price) is int and price == 5
    assert b'"price":5}' in orjson.dumps(stored[0].data)
    _, loaded = await engine.aggregate_state("Order", "o1")
    assert loaded.state["total"] == 10 and type(loaded.state["total"]) is int
    _, anew = await CommandEngine(config, store).aggregate_state("Order", "o1")  # no cache
    assert anew.state == loaded.state
    paid = await engine.execute("PayOrder", {"order_id": "o1", "amount": 10.0})
    assert paid.version == 2 and type(paid.events[0].data["amount"]) is int


NUMBER_RULE = """\
catgad: 1
service: {name: doubles}
store: memory
bus: memory
aggregates:
  Thing:
    id: thing_id
    initial: {twice: 0, count: 0}
    on:
      Measured:
        set: {twice: data.x * 2}
      Doubled:
        set: {twice: data.twice}
      Counted:
        set: {count: state.count + data.n}
commands:
  Measure:
    aggregate: Thing
    schema:
      type: object
      required: [thing_id, x]
      properties: {thing_id: {type: string}, x: {type: number}}
    emit:
      - event: Measured
        data: {thing_id: data.thing_id, x: data.x}
  Double:
    aggregate: Thing
    schema:
      type: object
      required: [thing_id, x]
      properties: {thing_id: {type: string}, x: {type: number}}
    emit:
      - event: Doubled
        data: {thing_id: data.thing_id, twice: data.x * 2.0}
  Count:
    aggregate: Thing
    schema:
      type: object
      required: [thing_id, x]
      properties: {thing_id: {type: string}, x: {type: number}}
    emit:
      - event: Counted
        data: {thing_id: data.thing_id, n: data.x}
events:
  Counted:
    version: 1
    schema:
      type: object
      required: [thing_id, n]
      properties: {thing_id: {type: string}, n: {type: integer}}
  Doubled:
    version: 1
    schema:
      type: object
      required: [thing_id, twice]
      properties: {thing_id: {type: string}, twice: {type: number}}
  Measured:
    version: 1
    schema:
      type: object
      required: [thing_id, x]
      properties: {thing_id: {type: string}, x: {type: number}}
"""


def doubles(tmp_path: Path) -> Config:
    path = tmp_path / "doubles.yaml"
    path.write_text(NUMBER_RULE)
    return load_config(path, env={})


async def test_a_number_sent_as_an_int_meets_double_arithmetic(
    store: MemoryStore, tmp_path: Path
) -> None:
    engine = CommandEngine(doubles(tmp_path), store)
    # 3 is a valid `number`; the emit rule sees 3.0, so `data.x * 2.0` works
    done = await engine.execute("Double", {"thing_id": "t1", "x": 3})
    [event] = done.events
    assert type(event.data["twice"]) is float and event.data["twice"] == 6.0
    _, loaded = await engine.aggregate_state("Thing", "t1")
    assert loaded.state["twice"] == 6.0


async def test_an_event_field_is_stored_as_its_own_schema_declares(
    store: MemoryStore, tmp_path: Path
) -> None:
    engine = CommandEngine(doubles(tmp_path), store)
    # x is a `number` (3.0); the event's n is an `integer`: stored, and folded, as 3
    done = await engine.execute("Count", {"thing_id": "t1", "x": 3.0})
    assert type(done.events[0].data["n"]) is int
    [stored] = await store.read("Thing-t1")
    assert type(stored.data["n"]) is int and stored.data["n"] == 3
    _, loaded = await engine.aggregate_state("Thing", "t1")
    assert loaded.state["count"] == 3


async def test_a_rule_that_cannot_apply_the_event_refuses_the_command(
    store: MemoryStore, tmp_path: Path
) -> None:
    engine = CommandEngine(doubles(tmp_path), store)
    # x is a `number`: 3 becomes 3.0, and CEL will not multiply a double by the int 2
    with pytest.raises(EventRuleFailed) as caught:
        await engine.execute("Measure", {"thing_id": "t1", "x": 3})
    refused = caught.value
    assert refused.status == 422 and refused.slug == "event-rule-failed"
    assert refused.extensions() == {
        "command": "Measure",
        "event": "Measured",
        "rule": "aggregates.Thing.on.Measured.set.twice",
        "field": "twice",
    }
    assert "nothing was stored" in str(refused)
    assert await store.stream_version("Thing-t1") == 0
    assert await store.read_all() == []
    with pytest.raises(EventRuleFailed):  # 3.5 as well: a double, whatever its value
        await engine.execute("Measure", {"thing_id": "t1", "x": 3.5})
    assert await store.read_all() == []
