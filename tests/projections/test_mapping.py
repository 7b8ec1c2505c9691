"""The pure mapping: an event (and the current rows) in, upsert/update/delete operations out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from catgad.envelope import Envelope
from catgad.model import Config
from catgad.projections.mapping import Mapper, MappingError, Op, coerce
from catgad.projections.model import ColumnDef
from catgad.projections.section import PROJECTIONS as READ_MODELS
from tests.projections.conftest import BASE, PROJECTIONS


def event(type_: str, position: int = 1, **data: Any) -> Envelope:
    return Envelope(
        type=type_, data=data, id=f"e{position}", subject="Counter-x", position=position
    )


@pytest.fixture
def config(write_config: Callable[[str], Config]) -> Config:
    return write_config(BASE + PROJECTIONS)


def test_plain_operations(config: Config) -> None:
    mapper = Mapper(READ_MODELS.of(config)["counters"])
    assert not mapper.reads_rows
    assert mapper.ops(event("Added", cid="a", by=3, group="g")) == [
        Op("upsert", "a", {"total": 3, "group": "g", "last": "e1"})
    ]
    assert mapper.ops(event("Renamed", cid="a", name="Ann")) == [Op("update", "a", {"name": "Ann"})]
    assert mapper.ops(event("Removed", cid="a")) == [Op("delete", "a", {})]
    assert mapper.ops(event("Unrelated", cid="a")) == []


def test_row_reading_operations_see_earlier_ones(config: Config) -> None:
    mapper = Mapper(READ_MODELS.of(config)["groups"])
    assert mapper.reads_rows
    rows: dict[str, dict[str, Any] | None] = {"g": None}
    ops = [
        *mapper.ops(event("Added", 1, cid="a", by=3, group="g"), rows),
        *mapper.ops(event("Added", 2, cid="b", by=4, group="g"), rows),
        *mapper.ops(event("Added", 3, cid="c", by=4), rows),  # no group: `when` is false
    ]
    assert ops == [
        Op("upsert", "g", {"total": 3, "count": 1}),
        Op("upsert", "g", {"total": 7, "count": 2}),
    ]
    assert rows == {"g": {"total": 7, "count": 2}}


def test_an_update_of_a_missing_row_does_nothing_when_rows_are_known(
    write_config: Callable[[str], Config],
) -> None:
    config = write_config(
        BASE
        + """
projections:
  p:
    key: data.cid
    columns: {n: {type: integer, default: 0}}
    on:
      Added: {update: {n: row.n + data.by}}
      Removed: {delete: true}
"""
    )
    mapper = Mapper(READ_MODELS.of(config)["p"])
    rows: dict[str, dict[str, Any] | None] = {"a": None, "b": {"n": 1}}
    assert mapper.ops(event("Added", cid="a", by=1), rows) == []
    assert mapper.ops(event("Added", cid="b", by=2), rows) == [Op("update", "b", {"n": 3})]
    assert mapper.ops(event("Removed", cid="b"), rows) == [Op("delete", "b", {})]
    assert rows == {"a": None, "b": None}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"cid": "a", "by": "three", "group": "g"}, "expected an integer, got 'three'"),
        ({"cid": "a", "by": 2**64, "group": "g"}, "does not fit in 64 bits"),
        ({"cid": "", "by": 1}, "a key must be a non-empty string or an integer"),
        ({"cid": ["a"], "by": 1}, "a key must be a non-empty string or an integer"),
        ({"by": 1}, "no such field"),
    ],
)
def test_poison_events_are_mapping_errors(config: Config, data: dict[str, Any], why: str) -> None:
    with pytest.raises(MappingError) as caught:
        Mapper(READ_MODELS.of(config)["counters"]).ops(event("Added", **data))
    assert why in str(caught.value)
    assert caught.value.where.startswith("projections.counters.on.Added[0].")


def test_integer_keys_become_strings(config: Config) -> None:
    ops = Mapper(READ_MODELS.of(config)["counters"]).ops(event("Removed", cid=42))
    assert ops == [Op("delete", "42", {})]


@pytest.mark.parametrize(
    ("column", "value", "stored"),
    [
        (ColumnDef("x", "integer"), 3.0, 3),
        (ColumnDef("x", "number"), 3, 3.0),
        (ColumnDef("x", "string"), "s", "s"),
        (ColumnDef("x", "boolean"), False, False),
        (ColumnDef("x", "json"), {"a": [1]}, {"a": [1]}),
        (ColumnDef("x", "integer"), None, None),
    ],
)
def test_values_take_their_column_type(column: ColumnDef, value: Any, stored: Any) -> None:
    result = coerce(column, value)
    assert result == stored and type(result) is type(stored)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (ColumnDef("x", "integer"), 2.5),
        (ColumnDef("x", "integer"), True),
        (ColumnDef("x", "number"), float("nan")),
        (ColumnDef("x", "string"), 1),
        (ColumnDef("x", "boolean"), 0),
    ],
)
def test_values_of_another_type_are_refused(column: ColumnDef, value: Any) -> None:
    with pytest.raises(ValueError):
        coerce(column, value)


def test_the_one_pass_mapping_agrees_with_the_two_step_one(config: Config) -> None:
    mapper = Mapper(READ_MODELS.of(config)["counters"])
    events = [
        event("Added", 1, cid="a", by=3, group="g"),
        event("Added", 2, cid=7, by=3.0, group="h"),
        event("Renamed", 3, cid="a", name="x"),
        event("Removed", 4, cid="a"),
        event("Other", 5, cid="a"),
    ]
    for e in events:
        assert mapper.direct(e) == mapper.evaluate(e, mapper.prepare(e), None)
    assert Mapper(READ_MODELS.of(config)["groups"]).direct(events[0]) is None  # it reads rows
    with pytest.raises(MappingError):
        mapper.direct(event("Added", 6, cid="a", by="x"))
