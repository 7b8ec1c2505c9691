"""Property: the generated one-pass mapping (mapgen) gives the general path's operations, or
its very error, for any event data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catgad.envelope import Envelope
from catgad.model import Config
from catgad.projections.mapping import Mapper, MappingError
from catgad.projections.section import PROJECTIONS as READ_MODELS
from catgad.store.codec import StoredEvent
from tests.projections.test_fastcel import numbers, scalars

FIELDS = "{cid: {}, by: {}, n: {}, name: {}, items: {}, group: {}}"
TYPES = ["Added", "Renamed", "Removed", "Moved", "Counted", "Named", "Other"]
EVENTS = "".join(f"  {t}: {{schema: {{type: object, properties: {FIELDS}}}}}\n" for t in TYPES)
CONFIG = f"""
catgad: 1
store: memory
aggregates:
  Counter:
    id: cid
    on:
      Added: {{set: {{n: data.by}}}}
events:
{EVENTS}"""
# Each data field read by one operation only, so no other check hides a wrong answer.
PROJECTION = """
projections:
  p:
    target: {kind: sqlite, path: read.db}
    key: data.cid
    columns:
      i: {type: integer, default: 0}
      x: number
      s: string
      b: boolean
      j: json
      lit: string
    on:
      Added:
        upsert: {i: data.by, x: data.n, s: data.group, lit: "'fixed'"}
      Renamed:
        update: {j: "data.items.map(t, t.qty * t.price)"}
      Removed:
        - delete: true
        - upsert: {i: "data.items.map(t, t.qty * t.price).sum()", b: has(data.group)}
          key: data.name
      Moved:
        update: {x: double(data.by) * 1.5, s: data.name}
        key: data.group
        when: has(data.group) && data.group != ''
      Counted:
        upsert: {i: data.by % data.n, s: string(data.name), x: size(data.items)}
      Named:
        upsert: {s: event.type, lit: data.name + '-', j: "data.items.filter(t, t.qty > 1)"}
        key: data.name
      Other:
        - upsert: {i: int(data.name), x: data.by - data.n * 2}
        - update: {i: size(data.items) + data.by / data.n, b: data.group == 'g'}
          key: data.group
"""


# Data that maps, with one or two of the fields the operations read replaced (or removed),
# most often by an edge: the limits of the generated code's checks.
small = st.integers(1, 9)
int_edges = st.sampled_from([0, -1, -7, 2**63 - 1, -(2**63), 2**64])
float_edges = st.sampled_from([1.5, 4.0, -0.0, float("inf"), -float("inf"), float("nan")])
edges = st.one_of(int_edges, int_edges, float_edges, st.sampled_from([True, "", "x", [1]]))
item = st.fixed_dictionaries({"qty": small, "price": small})
valid = st.fixed_dictionaries(
    {
        "cid": st.sampled_from(["a", "b", 7]),
        "by": small,
        "n": small,
        "name": st.sampled_from(["12", "-3", "x"]),
        "items": st.lists(item, max_size=3),
        "group": st.sampled_from(["g", "h"]),
    }
)
replacements = st.one_of(
    edges,
    edges,
    edges,
    scalars,
    numbers,
    st.just("<removed>"),
    st.just({"qty": 1}),
    st.lists(st.fixed_dictionaries({"qty": st.one_of(small, edges), "price": edges}), max_size=2),
)
READS = {
    "Added": ["cid", "by", "n", "group"],
    "Renamed": ["cid", "items"],
    "Removed": ["cid", "name", "items", "group"],
    "Moved": ["group", "by", "name"],
    "Counted": ["cid", "by", "n", "name", "items"],
    "Named": ["name", "items"],
    "Other": ["cid", "name", "by", "n", "items", "group"],
}


@pytest.fixture
def mapper(write_config: Callable[[str], Config]) -> Mapper:
    return Mapper(READ_MODELS.of(write_config(CONFIG + PROJECTION))["p"])


def outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        ops = run()
    except MappingError as exc:
        return ("error", (exc.where, exc.why))
    except Exception as exc:  # whatever the general path lets through, the same
        return ("raised", (type(exc), str(exc)))
    # repr: nan is nan, 1 is not 1.0, nor -0.0 0.0; maps sorted, as CEL's come in any order
    return ("ops", repr([(op.kind, op.key, canonical(op.fields)) for op in ops]))


def canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((k, canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


@pytest.mark.parametrize("event_type", TYPES)
def test_each_event_type_is_generated_and_maps_data_alone(
    mapper: Mapper, event_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert hasattr(mapper.appenders[event_type], "source")
    monkeypatch.setattr(mapper, "_direct_general", lambda event: pytest.fail("general path"))
    data = {"cid": "a", "by": 3, "n": 2, "name": "12", "items": [{"qty": 2, "price": 5}]}
    event = Envelope(type=event_type, data={**data, "group": "g"}, id="e1", position=7)
    assert mapper.direct(event)


@pytest.mark.parametrize("event_type", TYPES)
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(draw=st.data(), as_record=st.booleans())
def test_the_generated_mapping_agrees_with_the_general_one(
    mapper: Mapper, event_type: str, draw: st.DataObject, as_record: bool
) -> None:
    data = draw.draw(valid)
    changes = st.dictionaries(st.sampled_from(READS[event_type]), replacements, max_size=2)
    for name, value in draw.draw(changes).items():
        if value == "<removed>":
            del data[name]
        else:
            data[name] = value
    envelope = Envelope(type=event_type, data=data, id="e1", subject="Counter-x", position=7)
    event: Envelope | StoredEvent = StoredEvent.of(envelope) if as_record else envelope
    assert outcome(lambda: mapper.direct(event)) == outcome(lambda: mapper._direct_general(event))


@pytest.mark.parametrize("data", [None, [1], "x", {"cid": "a", "items": "no"}])
def test_data_of_another_shape_takes_the_general_path(mapper: Mapper, data: Any) -> None:
    event = Envelope(type="Added", data=data, id="e1", subject="Counter-x", position=7)
    assert outcome(lambda: mapper.direct(event)) == outcome(lambda: mapper._direct_general(event))


EDGES = [
    *(0, -1, -7, 2**63 - 1, -(2**63), 2**64, 1.5, 4.0, -0.0, float("inf"), float("nan")),
    *(True, None, "", "x", "12", [1], [], {"qty": 1}, [{"qty": 2**63 - 1, "price": 2}]),
    "<removed>",
]


@pytest.mark.parametrize("event_type", TYPES)
def test_every_edge_in_every_field_read(mapper: Mapper, event_type: str) -> None:
    base = {"cid": "a", "by": 3, "n": 2, "name": "12", "items": [{"qty": 2, "price": 5}]}
    for name in READS[event_type]:
        for value in EDGES:
            data = {**base, "group": "g", name: value}
            if value == "<removed>":
                del data[name]
            event = Envelope(type=event_type, data=data, id="e1", subject="Counter-x", position=7)
            assert outcome(lambda e=event: mapper.direct(e)) == outcome(
                lambda e=event: mapper._direct_general(e)
            ), data
