"""Baseline (b): the `eventsourcing` library (SQLite persistence) running the same commands.

An `Order` aggregate with create/pay/ship and the same preconditions as the
YAML rules, inside an `Application` persisted by `eventsourcing.sqlite` to a
temporary file. The library is synchronous: commands run one after the other
in this thread, each `save()` being its own transaction (the library has no
group commit), in the same order the concurrent clients of the other systems
produce them.

Durability: the library switches the file to WAL and leaves `synchronous` at
SQLite's compiled default, which is FULL here (checked and reported). For a
NORMAL run the benchmark sets the PRAGMA on every connection the library's
pool opens, and checks it afterwards.

Variants: the repository with an aggregate cache (the library's fastest
single-writer setting: no re-read of the stream before each command, as
catgad's in-process state cache) and without one (each command replays the
order from the database, the library's default).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, cast
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.sqlite import SQLiteConnection, SQLiteFactory

from bench.workload import Measurement, Progress, Workload, count_whole_streams, no_progress, verify

SYNC_NAMES = {0: "off", 1: "normal", 2: "full", 3: "extra"}


class OrderRejected(Exception):
    """A precondition of a command is false."""


class Order(Aggregate):
    @staticmethod
    def create_id(order_id: str, **_: Any) -> UUID:
        return uuid5(NAMESPACE_URL, f"/orders/{order_id}")

    @event("Created")
    def __init__(self, order_id: str, customer: str, items: list[dict[str, Any]]) -> None:
        self.order_id = order_id
        self.customer = customer
        self.items = items
        self.total = sum(int(i["qty"]) * int(i["price"]) for i in items)
        self.status = "created"
        self.paid = 0
        self.tracking = ""

    def pay(self, amount: int) -> None:
        if self.status != "created":
            raise OrderRejected("only a created order can be paid")
        if amount != self.total:
            raise OrderRejected("amount must equal the order total")
        self._paid(amount)

    @event("Paid")
    def _paid(self, amount: int) -> None:
        self.status = "paid"
        self.paid = amount

    def ship(self, tracking: str) -> None:
        if self.status != "paid":
            raise OrderRejected("only a paid order can be shipped")
        self._shipped(tracking)

    @event("Shipped")
    def _shipped(self, tracking: str) -> None:
        self.status = "shipped"
        self.tracking = tracking


class Orders(Application[UUID]):
    def create_order(self, order_id: str, customer: str, items: list[dict[str, Any]]) -> UUID:
        # An existing order makes save() fail on the (originator_id, version) key.
        order = Order(order_id=order_id, customer=customer, items=items)
        self.save(order)
        return order.id

    def pay_order(self, order_id: str, amount: int) -> None:
        order = cast(Order, self.repository.get(Order.create_id(order_id)))
        order.pay(amount)
        self.save(order)

    def ship_order(self, order_id: str, tracking: str) -> None:
        order = cast(Order, self.repository.get(Order.create_id(order_id)))
        order.ship(tracking)
        self.save(order)

    def handle(self, command_type: str, data: dict[str, Any]) -> None:
        if command_type == "CreateOrder":
            self.create_order(data["order_id"], data["customer"], data["items"])
        elif command_type == "PayOrder":
            self.pay_order(data["order_id"], data["amount"])
        elif command_type == "ShipOrder":
            self.ship_order(data["order_id"], data["tracking"])
        else:
            raise OrderRejected(f"unknown command {command_type}")


def _raw(conn: SQLiteConnection) -> sqlite3.Connection:
    return conn._sqlite_conn


def _pooled(app: Orders) -> list[SQLiteConnection]:
    return list(cast(SQLiteFactory, app.factory).datastore.pool._pool)


def apply_synchronous(app: Orders, synchronous: str) -> None:
    """Make every connection of the library's pool use `synchronous` (the library has no
    setting for it)."""
    pragma = f"PRAGMA synchronous={synchronous.upper()}"
    pool = cast(SQLiteFactory, app.factory).datastore.pool
    create = pool._create_connection

    def create_with_pragma() -> SQLiteConnection:
        conn = create()
        _raw(conn).execute(pragma)
        return conn

    setattr(pool, "_create_connection", create_with_pragma)  # noqa: B010
    for conn in _pooled(app):
        _raw(conn).execute(pragma)


def synchronous_in_use(app: Orders) -> set[str]:
    return {
        SYNC_NAMES[int(_raw(c).execute("PRAGMA synchronous").fetchone()[0])] for c in _pooled(app)
    }


def count_events(path: Path, workload: Workload) -> int:
    return count_whole_streams(
        path, workload, table="stored_events", stream="originator_id", version="originator_version"
    )


def run(
    workload: Workload,
    synchronous: str,
    db_path: Path,
    *,
    cache: bool,
    progress: Progress = no_progress,
) -> Measurement:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(db_path),
    }
    if cache:
        env["AGGREGATE_CACHE_MAXSIZE"] = str(workload.orders_total)
        env["AGGREGATE_CACHE_FASTFORWARD"] = "n"  # single writer: trust the cache
    app = Orders(env=env)
    try:
        if synchronous != "full" or synchronous_in_use(app) != {"full"}:
            apply_synchronous(app, synchronous)
        waves = list(workload.steps())
        latencies: list[int] = []
        clock = time.perf_counter_ns
        started = time.perf_counter()
        for wave in waves:
            for _order, command_type, data in wave:
                t0 = clock()
                app.handle(command_type, data)
                latencies.append(clock() - t0)
            progress(len(wave))
        seconds = time.perf_counter() - started
        seen = synchronous_in_use(app)
    finally:
        app.close()
    if seen != {synchronous}:
        raise RuntimeError(
            f"eventsourcing connections ran with synchronous={seen}, not {synchronous}"
        )
    m = Measurement(
        system="eventsourcing",
        variant="cached repository" if cache else "no cache (replay per command)",
        synchronous=synchronous,
        commands=len(latencies),
        events=len(latencies),
        seconds=seconds,
        latencies_ns=latencies,
        notes=["WAL set by the library; synchronous checked on its pooled connections"],
    )
    verify(m, workload, count_events(db_path, workload))
    return m
