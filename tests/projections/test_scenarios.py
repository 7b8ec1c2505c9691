"""Read-model scenarios: given events, then a projection's row (catgad.testing.scenarios)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.errors import ConfigError
from catgad.model import Config
from catgad.testing.scenarios import Outcome, run_scenario
from catgad.testing.section import TESTS

EXAMPLES = Path(__file__).parents[2] / "config" / "examples"

# Groups is a Redis projection whose mapping reads its rows; it runs here without Redis.
SERVICE = """
catgad: 1
store: memory
aggregates:
  Counter:
    id: cid
    on: {Added: {set: {n: data.by}}}
commands:
  Add:
    aggregate: Counter
    schema: {type: object, required: [cid, by], properties: {cid: {type: string}, by: {}}}
    emit: [{event: Added, data: {cid: data.cid, by: data.by, group: "'g'"}}]
events:
  Added:
    schema:
      type: object
      properties: {cid: {type: string}, by: {}, group: {type: string}}
  Renamed:
    version: 2
    schema: {type: object, properties: {cid: {type: string}, name: {type: string}}}
    upcasters:
      1: {rename: {title: name}}
projections:
  counters:
    target: {kind: sqlite, path: read.db}
    key: data.cid
    columns:
      total: {type: integer, default: 0}
      name: string
      ok: boolean
      ratio: number
    on:
      Added: {upsert: {total: data.by, ok: "data.by > 0", ratio: "double(data.by) / 2.0"}}
      Renamed: {update: {name: data.name}}
  groups:
    target: {kind: redis, url: "redis://127.0.0.1:1/0"}
    key: data.group
    columns:
      count: {type: integer, default: 0}
    on:
      Added:
        upsert: {count: row.count + 1}
        when: has(data.group)
tests:
"""


def scenarios(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "service.yaml"
    path.write_text(textwrap.dedent(SERVICE) + textwrap.indent(textwrap.dedent(text), "  "))
    return load_config(path, env={})


async def run_all(config: Config) -> list[Outcome]:
    return [await run_scenario(config, s, {}) for s in TESTS.of(config)]


async def test_rows_exact_subset_and_absent(tmp_path: Path) -> None:
    config = scenarios(
        tmp_path,
        """
        - name: rows
          given:
            - {type: Added, data: {cid: a, by: 3, group: g}}
            - {type: Added, stream: Counter-b, data: {cid: b, by: -1, group: g}}
            - {type: Renamed, version: 1, data: {cid: a, title: Ann}}
          then:
            rows:
              - {projection: counters, key: a, row: {total: 3, name: Ann, ok: true, ratio: 1.5}}
              - {projection: counters, key: b, fields: {ok: false, name: null}}
              - {projection: counters, key: c, absent: true}
              - {projection: groups, key: g, row: {key: g, count: 2}}
        - name: with a command
          when: {command: Add, data: {cid: a, by: 4}}
          then:
            events: [{type: Added, data: {cid: a, by: 4, group: g}}]
            rows: [{projection: groups, key: g, fields: {count: 1}}]
        """,
    )
    outcomes = await run_all(config)
    assert [(o.passed, o.problems) for o in outcomes] == [(True, []), (True, [])]


async def test_a_wrong_row_says_which_field_differs(tmp_path: Path) -> None:
    config = scenarios(
        tmp_path,
        """
        - name: wrong
          given: [{type: Added, data: {cid: a, by: 3, group: g}}]
          then:
            rows:
              - {projection: counters, key: a, fields: {total: 4, ok: 1}}
              - {projection: counters, key: a, row: {total: 3, ok: true, ratio: 1.5}}
              - {projection: counters, key: a, absent: true}
              - {projection: groups, key: h, fields: {count: 1}}
        """,
    )
    (outcome,) = await run_all(config)
    assert not outcome.passed
    assert outcome.problems == [
        "counters['a'].total: expected 4, got 3",
        "counters['a'].ok: expected 1, got True",  # true is not 1
        "counters['a'].name: got None, but `row` does not list it "
        "(list every column, or check some with `fields`)",
        "counters['a']: expected no row, got {total: 3, name: None, ok: True, ratio: 1.5}",
        "groups['h']: expected a row, but there is none",
    ]


async def test_a_poison_event_fails_the_scenario(tmp_path: Path) -> None:
    config = scenarios(
        tmp_path,
        """
        - name: poison
          given: [{type: Added, data: {cid: a, by: x}}]
          then:
            rows: [{projection: counters, key: a, absent: true}]
        """,
    )
    (outcome,) = await run_all(config)
    assert not outcome.passed
    (problem,) = outcome.problems
    assert problem.startswith("projection 'counters' could not apply event ")
    assert "(Added) at position 1: projections.counters.on.Added[0]" in problem


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "{projection: countres, key: a, absent: true}",
            "tests[0].then.rows[0].projection: unknown projection 'countres' "
            "(did you mean 'counters'?)",
        ),
        (
            "{projection: counters, key: a, fields: {totl: 1}}",
            "tests[0].then.rows[0].fields: unknown column 'totl' (did you mean 'total'?)",
        ),
        (
            "{projection: counters, key: a, fields: {}, absent: true}",
            "tests[0].then.rows[0]: an expected row needs exactly one of 'row', 'fields' or "
            "'absent'",
        ),
    ],
)
def test_bad_row_expectations_are_config_errors(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        scenarios(tmp_path, f"- {{name: x, then: {{rows: [{row}]}}}}\n")
    assert [f"{i.path}: {i.message}" for i in caught.value.issues] == [message]
    (issue,) = caught.value.issues
    assert issue.file.endswith("service.yaml") and issue.line > 1


def test_a_scenario_without_a_command_checks_rows_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        scenarios(tmp_path, "- {name: x, then: {state: {n: 1}}}\n")
    messages = [i.message for i in caught.value.issues]
    assert "without 'when' (a command), 'then' checks 'rows' (and 'state' not at all)" in messages


async def test_the_examples_read_model_scenarios(tmp_path: Path) -> None:
    config = load_config(EXAMPLES / "orders.yaml", env={"CATGAD_REDIS_PROJECTIONS": "false"})
    reads = [s for s in TESTS.of(config) if s.expect_rows]
    assert {r.projection for s in reads for r in s.expect_rows or []} == {
        "orders",
        "customer_totals",  # a Redis projection, disabled here: its mapping is still tested
    }
    outcomes = [await run_scenario(config, s) for s in reads]
    assert [(o.scenario.name, o.problems) for o in outcomes if not o.passed] == []
