"""A stream poisoned by an earlier catgad is repaired by `catgad migrate`, on every store.

Before numbers were normalised to their schema, CreateOrder with "price": 5.0
passed (JSON Schema counts 5.0 as an integer) and was stored as it came; the
aggregate's `qty * price` then failed on every read (CEL does not multiply an
int by a double). Such an event is written here as that catgad wrote it; the
stream cannot be loaded (UnreadableStream, naming stream, version and repair);
migrate rewrites the event with the int 5 its schema declares, and the order
reads back with its total. A second migrate finds nothing to do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from catgad.app.load import load_config
from catgad.engine.commands import CommandEngine
from catgad.envelope import Envelope
from catgad.errors import UnreadableStream
from catgad.evolution.migrate import migrate
from catgad.evolution.upcast import Upcasters
from catgad.handlers.registry import load_plugins
from catgad.ids import event_id
from catgad.model import Config
from catgad.store.protocol import EventStore, RewritableStore
from catgad.store.sqlite import SQLiteStore
from tests.helpers.daemon import edited_example, run_cli
from tests.helpers.stores import BACKEND_PARAMS, BACKENDS

EXAMPLE = Path(__file__).parents[2] / "config" / "examples" / "orders.yaml"
POISONED = {"order_id": "o1", "customer": "alice", "items": [{"sku": "b", "qty": 2, "price": 5.0}]}


def as_old_catgad_stored_it(data: dict[str, Any], command_id: str = "old-create-o1") -> Envelope:
    """OrderCreated as the engine built it (CommandEngine._envelopes), its data as it came."""
    return Envelope(
        type="OrderCreated",
        data=data,
        id=event_id(command_id, 0),
        source="orders",
        subject=f"Order-{data['order_id']}",
        correlationid=command_id,
        causationid=command_id,
        dataschemaversion=1,
    )


async def poison(config: Config, store: EventStore) -> None:
    """o1 poisoned as the issue's request left it; o2 created as catgad creates orders now."""
    await store.append(
        "Order-o1",
        [as_old_catgad_stored_it(POISONED)],
        expected_version=0,
        command_id="old-create-o1",
    )
    o2 = {"order_id": "o2", "customer": "bob", "items": [{"sku": "c", "qty": 3, "price": 7}]}
    await CommandEngine(config, store).execute("CreateOrder", o2)


async def stored_price(store: EventStore) -> Any:
    [event] = await store.read("Order-o1")
    return event.data["items"][0]["price"]


def orders() -> Config:
    return load_config(EXAMPLE, env={"CATGAD_REDIS_PROJECTIONS": "false"})


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_migrate_repairs_a_stream_stored_with_5_0_for_an_integer(
    backend: str, tmp_path: Path
) -> None:
    config = orders()
    upcasters = Upcasters(config, load_plugins(config))
    async with BACKENDS[backend](tmp_path) as store:
        assert isinstance(store, RewritableStore)
        await poison(config, store)
        raw = await store.read_all(limit=100)
        price = await stored_price(store)
        assert type(price) is float and price == 5.0  # stored as it came, like before the fix

        engine = CommandEngine(config, store)
        with pytest.raises(UnreadableStream) as caught:
            await engine.aggregate_state("Order", "o1")
        unreadable = caught.value
        assert unreadable.status == 500 and unreadable.slug == "unreadable-stream"
        assert (unreadable.stream, unreadable.version) == ("Order-o1", 1)
        assert unreadable.extensions()["rule"] == "aggregates.Order.on.OrderCreated.set.total"
        assert "catgad migrate" in str(unreadable)

        dry = await migrate(store, config, upcasters, dry_run=True)
        assert (dry.scanned, dry.normalised, dry.upcast, dry.current) == (2, 1, 0, 1)
        assert dry.failed == []
        assert await store.read_all(limit=100) == raw  # a dry run writes nothing
        assert type(await stored_price(store)) is float

        report = await migrate(store, config, upcasters)
        assert (report.scanned, report.normalised, report.upcast, report.current) == (2, 1, 0, 1)
        assert report.failed == [] and report.stopped is None
        price = await stored_price(store)
        assert type(price) is int and price == 5
        after = await store.read_all(limit=100)
        assert [(e.id, e.position, e.streamversion, e.dataschemaversion) for e in after] == [
            (e.id, e.position, e.streamversion, e.dataschemaversion) for e in raw
        ]  # only the data changed

        for reader in (engine, CommandEngine(config, store)):
            _, loaded = await reader.aggregate_state("Order", "o1")
            assert (loaded.version, loaded.state["total"], loaded.state["status"]) == (
                1,
                10,
                "created",
            )
        paid = await engine.execute("PayOrder", {"order_id": "o1", "amount": 10})
        assert paid.version == 2

        again = await migrate(store, config, upcasters)
        assert (again.scanned, again.normalised, again.upcast, again.current) == (3, 0, 0, 3)


@pytest.mark.sqlite
def test_the_cli_repairs_it_as_a_user_runs_it(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    path = edited_example(tmp_path / "config", {"${CATGAD_SQLITE_PATH:-orders.db}": str(db)})
    config = load_config(path, env={"CATGAD_REDIS_PROJECTIONS": "false"})

    async def with_store(job: Any) -> Any:
        store = SQLiteStore(db)
        await store.open()
        try:
            return await job(store)
        finally:
            await store.close()

    async def load_o1(store: EventStore) -> Any:
        _, loaded = await CommandEngine(config, store).aggregate_state("Order", "o1")
        return loaded

    asyncio.run(with_store(lambda store: poison(config, store)))
    raw = asyncio.run(with_store(lambda store: store.read_all(limit=100)))
    with pytest.raises(UnreadableStream):
        asyncio.run(with_store(load_o1))

    dry = run_cli("migrate", str(path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "dry run: nothing was written"
    assert any(line.startswith("to normalise: 1 (") for line in lines), dry.stdout
    assert "current:     1" in lines
    assert asyncio.run(with_store(lambda store: store.read_all(limit=100))) == raw

    done = run_cli("migrate", str(path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "migration done"
    assert any(line.startswith("normalised:  1 (") for line in lines), done.stdout
    loaded = asyncio.run(with_store(load_o1))
    assert (loaded.version, loaded.state["total"]) == (1, 10)

    again = run_cli("migrate", str(path))
    assert again.returncode == 0, again.stderr
    assert not any(line.startswith("normalised:") for line in again.stdout.splitlines())
    assert "current:     2" in again.stdout.splitlines()
