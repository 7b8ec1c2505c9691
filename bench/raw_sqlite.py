"""Baseline (a): a raw sqlite3 client appending the workload's events, no framework.

The same events table as catgad's SQLite store (one row per event holding the
CloudEvents JSON body, a global position, UNIQUE(stream, version) as the
per-stream optimistic check, UNIQUE event id); none of catgad's bookkeeping
(stream versions, command ids for idempotency, snapshots). The same PRAGMAs (WAL and the
run's `synchronous`). The client knows each stream's next version, builds the
envelope with orjson, and inserts. Two variants:

- per batch: one transaction per wave of concurrent appends (`executemany`),
  a wave being the next command of each of the `concurrency` orders in flight,
  i.e. what catgad's group commit can at best gather into one commit;
- per event: one transaction per event, what a naive client does.

Latency of an event is from the start of its transaction to the end of the
commit that made it durable.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.workload import (
    Measurement,
    OrderSpec,
    Progress,
    Workload,
    count_whole_streams,
    no_progress,
    verify,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    id       TEXT    NOT NULL UNIQUE,
    type     TEXT    NOT NULL,
    time     TEXT    NOT NULL,
    command_id TEXT  NOT NULL,
    body     BLOB    NOT NULL,
    UNIQUE (stream, version)
)
"""
INSERT = (
    "INSERT INTO events (stream, version, id, type, time, command_id, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
EVENT_TYPE = {"CreateOrder": "OrderCreated", "PayOrder": "OrderPaid", "ShipOrder": "OrderShipped"}
VERSION = {"CreateOrder": 1, "PayOrder": 2, "ShipOrder": 3}

Row = tuple[str, int, str, str, str, str, bytes]


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise RuntimeError(f"could not switch {path} to WAL (got {mode})")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute(SCHEMA)
    return conn


def synchronous_of(conn: sqlite3.Connection) -> str:
    value = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    return {0: "off", 1: "normal", 2: "full", 3: "extra"}[value]


def row_for(order: OrderSpec, command_type: str, data: dict[str, Any]) -> Row:
    """The stored row of the one event `command_type` produces, envelope encoded."""
    stream = f"Order-{order.order_id}"
    event_type = EVENT_TYPE[command_type]
    event_id = str(uuid.uuid4())
    command_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "orders",
            "type": event_type,
            "subject": stream,
            "time": now,
            "datacontenttype": "application/json",
            "correlationid": command_id,
            "causationid": command_id,
            "dataschemaversion": 1,
            "data": data,
        }
    )
    return (stream, VERSION[command_type], event_id, event_type, now, command_id, body)


def count_events(path: Path, workload: Workload) -> int:
    return count_whole_streams(path, workload, table="events", stream="stream", version="version")


def run(
    workload: Workload,
    synchronous: str,
    db_path: Path,
    *,
    per_event: bool,
    progress: Progress = no_progress,
) -> Measurement:
    conn = connect(db_path, synchronous)
    durability = synchronous_of(conn)
    latencies: list[int] = []
    clock = time.perf_counter_ns
    waves = list(workload.steps())  # the client's input, made before the clock starts
    started = time.perf_counter()
    try:
        for wave in waves:
            if per_event:
                for order, command_type, data in wave:
                    t0 = clock()
                    conn.execute("BEGIN")
                    conn.execute(INSERT, row_for(order, command_type, data))
                    conn.execute("COMMIT")
                    latencies.append(clock() - t0)
            else:
                t0 = clock()
                conn.execute("BEGIN")
                conn.executemany(INSERT, [row_for(o, c, d) for o, c, d in wave])
                conn.execute("COMMIT")
                spent = clock() - t0
                latencies.extend([spent] * len(wave))
            progress(len(wave))
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    variant = "tx per event" if per_event else f"tx per batch of {workload.concurrency}"
    m = Measurement(
        system="raw sqlite3",
        variant=variant,
        synchronous=durability,
        commands=len(latencies),
        events=len(latencies),
        seconds=seconds,
        latencies_ns=latencies,
    )
    verify(m, workload, count_events(db_path, workload))
    return m
