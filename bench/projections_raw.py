"""The raw baselines of the projection benchmark: hand-written catch-up scripts, one per target.

Each reads the same stored events straight from the SQLite store's file
(sqlite3, orjson; no envelope objects), computes the `orders` rows of the
example in plain Python (no CEL), and writes them with the same batching as
catgad (500 events per transaction, runs of one statement as executemany,
the checkpoint updated in the same transaction, the same table, columns and
indexes). It knows the domain, which catgad does not: the Redis script moves
an order between status indexes without reading its old status. It does not
coalesce: each event's change is written as it comes, as a straightforward
script would (catgad folds a batch's changes per row first, see
catgad.projections.coalesce). PostgreSQL statements go out in pipeline mode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import orjson

UPSERT = (
    'INSERT INTO {t} ("key", customer, status, total, tracking) VALUES ({p}, {p}, {p}, {p}, {p})'
    ' ON CONFLICT ("key") DO UPDATE SET customer = excluded.customer,'
    " status = excluded.status, total = excluded.total"
)
UPDATE_STATUS = 'UPDATE {t} SET status = {p} WHERE "key" = {p}'
UPDATE_SHIPPED = 'UPDATE {t} SET status = {p}, tracking = {p} WHERE "key" = {p}'
Row = tuple[str, tuple[Any, ...]]  # statement kind, parameters


def batches(store_path: str, size: int) -> Iterator[tuple[int, list[tuple[str, dict[str, Any]]]]]:
    """(last position, [(type, data)]) per batch of `size` events, in store order."""
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    after = 0
    try:
        while True:
            rows = conn.execute(
                "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after, size),
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            out = []
            for _, body in rows:
                doc = orjson.loads(body)
                out.append((doc["type"], doc["data"]))
            yield after, out
    finally:
        conn.close()


def changes(events: list[tuple[str, dict[str, Any]]]) -> list[Row]:
    """The example's `orders` mapping, by hand."""
    out: list[Row] = []
    for kind, data in events:
        key = data["order_id"]
        if kind == "OrderCreated":
            total = sum(i["qty"] * i["price"] for i in data["items"])
            out.append(("upsert", (key, data["customer"], "created", total, None)))
        elif kind == "OrderPaid":
            out.append(("status", ("paid", key)))
        elif kind == "OrderShipped":
            out.append(("shipped", ("shipped", data["tracking"], key)))
        elif kind == "OrderCancelled":
            out.append(("status", ("cancelled", key)))
    return out


def grouped(rows: list[Row]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    for kind, params in rows:
        if out and out[-1][0] == kind:
            out[-1][1].append(params)
        else:
            out.append((kind, [params]))
    return out


def statements(table: str, param: str) -> dict[str, str]:
    return {
        "upsert": UPSERT.format(t=table, p=param),
        "status": UPDATE_STATUS.format(t=table, p=param),
        "shipped": UPDATE_SHIPPED.format(t=table, p=param),
    }


DDL = (
    'CREATE TABLE {t} ("key" TEXT PRIMARY KEY, customer TEXT, status TEXT,'
    " total {int} DEFAULT 0, tracking TEXT)",
    'CREATE INDEX {t}_c ON {t} (customer, "key")',
    'CREATE INDEX {t}_s ON {t} (status, "key")',
    "CREATE TABLE {t}_cp (name TEXT PRIMARY KEY, position BIGINT NOT NULL)",
    "INSERT INTO {t}_cp VALUES ('raw', 0)",
)


def raw_sqlite(store_path: str, read_path: str, size: int) -> int:
    conn = sqlite3.connect(read_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for ddl in DDL:
        conn.execute(ddl.format(t="raw_orders", int="INTEGER"))
    sql = statements("raw_orders", "?")
    count = 0
    for position, events in batches(store_path, size):
        conn.execute("BEGIN IMMEDIATE")
        for kind, params in grouped(changes(events)):
            conn.executemany(sql[kind], params)
        conn.execute("UPDATE raw_orders_cp SET position = ? WHERE name = 'raw'", (position,))
        conn.execute("COMMIT")
        count += len(events)
    conn.close()
    return count


def raw_postgres(store_path: str, url: str, schema: str, size: int) -> int:
    import psycopg

    table = f'"{schema}".raw_orders'
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for ddl in DDL:
            conn.execute(ddl.format(t=table, int="BIGINT").replace(f"{table}_c ON", "raw_c ON")
                         .replace(f"{table}_s ON", "raw_s ON"))  # fmt: skip
        sql = statements(table, "%s")
        count = 0
        for position, events in batches(store_path, size):
            # pipeline mode: the batch's statements go out without waiting for each answer
            with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
                for kind, params in grouped(changes(events)):
                    cur.executemany(sql[kind], params)
                cur.execute(f"UPDATE {table}_cp SET position = %s WHERE name = 'raw'", (position,))
            count += len(events)
    return count


def raw_redis(store_path: str, url: str, prefix: str, size: int) -> int:
    """Rows as hashes of JSON values, a key set, status and customer indexes: what the Redis
    target keeps, written with a MULTI/EXEC pipeline per batch."""
    import redis

    client = redis.Redis.from_url(url)
    dumps = orjson.dumps
    keys, rowp, index = f"{prefix}k", f"{prefix}r:", f"{prefix}i:"
    count = 0
    try:
        for position, events in batches(store_path, size):
            pipe = client.pipeline(transaction=True)
            for kind, params in changes(events):
                if kind == "upsert":
                    key, customer, status, total, _ = params
                    pipe.hset(rowp + key, mapping={
                        "customer": dumps(customer), "status": dumps(status),
                        "total": dumps(total), "tracking": b"null",
                    })  # fmt: skip
                    pipe.zadd(keys, {key: 0})
                    pipe.zadd(index + "customer:" + dumps(customer).decode(), {key: 0})
                    pipe.zadd(index + 'status:"created"', {key: 0})
                    continue
                key = params[-1]
                old = '"created"' if params[0] == "paid" else '"paid"'
                fields: dict[str | bytes | int | float, bytes] = {"status": dumps(params[0])}
                if kind == "shipped":
                    fields["tracking"] = dumps(params[1])
                pipe.hset(rowp + key, mapping=fields)  # type: ignore[arg-type]
                pipe.zrem(index + "status:" + old, key)
                pipe.zadd(index + "status:" + dumps(params[0]).decode(), {key: 0})
            pipe.set(prefix + "checkpoint", position)
            pipe.execute()
            count += len(events)
    finally:
        client.close()
    return count
