"""The process index (catgad.store.process_index), the same contract on every store: memory,
SQLite, PostgreSQL, Redis and NATS; and the due query reads only due entries (the query plan
on SQLite and PostgreSQL, the entries looked at on memory and NATS)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from catgad.store.process_index import InstanceRow, ProcessIndex, process_index
from tests.helpers.stores import BACKEND_PARAMS, BACKENDS

NOW = 1_700_000_000.0
WAITING = 1000  # instances whose timers are a day away
DUE = 10


def waiting(process_rows: int = WAITING) -> list[InstanceRow]:
    return [
        InstanceRow(f"w{i}", "awaiting_payment", "running", 2, NOW, NOW + 86_400 + i)
        for i in range(process_rows)
    ]


def due_now() -> list[InstanceRow]:  # due a second apart, the last one exactly now
    return [
        InstanceRow(f"d{i}", "review", "running", 3, NOW - 100, NOW - DUE + 1 + i, NOW - 50 + i)
        for i in range(DUE)
    ]


async def filled(index: ProcessIndex, process: str) -> None:
    await index.put(process, waiting())
    await index.put(process, due_now())
    await index.put("Other", [InstanceRow("d0", "x", "running", 1, NOW, NOW - 1)])


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_the_process_index_contract(backend: str, tmp_path: Path) -> None:
    async with BACKENDS[backend](tmp_path) as store:
        index = process_index(store)
        assert isinstance(index, ProcessIndex) and index.durable
        await filled(index, "Fulfilment")

        found = await index.due("Fulfilment", NOW, 100)
        assert [t.instance for t in found] == [f"d{i}" for i in range(DUE)], "due, earliest first"
        assert [t.due for t in found] == sorted(t.due for t in found)
        assert [t.instance for t in await index.due("Fulfilment", NOW, 3)] == ["d0", "d1", "d2"]
        assert await index.due("Fulfilment", NOW - DUE, 100) == []
        assert await index.next_due("Fulfilment") == NOW - DUE + 1
        assert await index.next_due("Nothing") is None

        # d0 moved on (fired: no timer now); an older write of d1 changes nothing
        await index.put("Fulfilment", [InstanceRow("d0", "expired", "finished", 6, NOW)])
        await index.put("Fulfilment", [InstanceRow("d1", "gone", "finished", 1, NOW)])
        for timer in await index.due("Fulfilment", NOW, 100):
            if timer.instance == "d0":  # a stale entry may still be met once: dropped then
                await index.drop("Fulfilment", timer)
        assert [t.instance for t in await index.due("Fulfilment", NOW, 100)] == [
            f"d{i}" for i in range(1, DUE)
        ]

        listed = await index.listing("Fulfilment", "review")
        assert sorted(r.instance for r in listed) == sorted(f"d{i}" for i in range(1, DUE))
        assert {r.version for r in listed} == {3}
        assert [r.instance for r in await index.listing("Fulfilment", "expired")] == ["d0"]
        assert len(await index.listing("Fulfilment")) == WAITING + DUE
        summary = await index.summary("Fulfilment")
        assert summary.states == {"awaiting_payment": WAITING, "review": DUE - 1, "expired": 1}
        assert summary.approvals == DUE - 1
        assert summary.oldest_approval == NOW - 50 + 1

        # the approvals waited for, the longest waiting first (d0 moved on: asks nothing now)
        asking = await index.asking("Fulfilment", 3)
        assert [r.instance for r in asking] == ["d1", "d2", "d3"]
        assert [r.asked_at for r in asking] == [NOW - 50 + i for i in (1, 2, 3)]
        assert {r.state for r in asking} == {"review"} and {r.version for r in asking} == {3}
        assert len(await index.asking("Fulfilment", 100)) == DUE - 1
        assert await index.asking("Nothing", 10) == []


async def test_sqlite_due_query_is_a_range_search_of_the_due_index(tmp_path: Path) -> None:
    from catgad.store.sqlite_process_index import DUE as QUERY

    async with BACKENDS["sqlite"](tmp_path) as store:
        await filled(process_index(store), "Fulfilment")
        plan = await store._read(  # type: ignore[attr-defined]
            lambda conn: conn.execute(
                "EXPLAIN QUERY PLAN " + QUERY, ("Fulfilment", NOW, 100)
            ).fetchall()
        )
        steps = [str(row[-1]) for row in plan]
        # one step, a SEARCH (a range of the index: no SCAN of the table nor of an index),
        # bounded by the process and `due <= now` (its lower bound: `due IS NOT NULL`)
        assert len(steps) == 1, steps
        assert steps[0].startswith("SEARCH process_index USING"), steps
        assert "INDEX process_index_due (process=? AND" in steps[0], steps
        assert steps[0].endswith("due<?)"), steps


@pytest.mark.postgres
async def test_postgres_due_query_scans_the_due_entries_only(tmp_path: Path) -> None:
    from catgad.store.postgres_process_index import Statements

    async with BACKENDS["postgres"](tmp_path) as store:
        await filled(process_index(store), "Fulfilment")
        sql = Statements(store.schema).due  # type: ignore[attr-defined]
        await store._fetch("analyze", f"ANALYZE {store.schema}.process_index", (), rows=False)  # type: ignore[attr-defined]
        plan = await store._fetch(  # type: ignore[attr-defined]
            "explain", "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, ("Fulfilment", NOW, 100)
        )
        doc = plan[0][0]
        nodes = _nodes((orjson.loads(doc) if isinstance(doc, bytes | str) else doc)[0]["Plan"])
        scans = [n for n in nodes if "Scan" in n["Node Type"]]
        assert [(n["Node Type"], n.get("Index Name")) for n in scans] in (
            [("Index Scan", "process_index_due")],
            [("Index Only Scan", "process_index_due")],
        ), scans
        assert scans[0]["Actual Rows"] == DUE, "rows read: the due ones, no waiting one"


def _nodes(plan: dict) -> list[dict]:  # type: ignore[type-arg]
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


@pytest.mark.parametrize("backend", ["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def test_the_due_query_looks_at_due_entries_only(backend: str, tmp_path: Path) -> None:
    async with BACKENDS[backend](tmp_path) as store:
        index = process_index(store)
        await filled(index, "Fulfilment")
        before = index.examined  # type: ignore[attr-defined]
        assert len(await index.due("Fulfilment", NOW, 100)) == DUE
        examined = index.examined - before  # type: ignore[attr-defined]
        # memory: the due entries and the heap children met below them; NATS: the entries
        # of the windows up to now's; never the WAITING entries a day away
        assert DUE <= examined <= 2 * DUE + 1, examined
