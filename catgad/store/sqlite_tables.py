"""The SQLite store's tables and what its write transactions do to them.

Everything here runs on the writer thread inside the batch transaction (see
sqlite_writer), except command_result and VERSION_OF, which readers share.
A batch of appends is first tried in bulk: a few statements for the whole
batch, decisions made in Python from what the batch read. Anything out of the
ordinary (a re-sent command id or event id) makes the batch fall back to
running each append on its own, in a savepoint, with the same rules.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

import orjson

from catgad.envelope import Envelope
from catgad.errors import ConcurrencyError, IdempotencyKeyReused, StoreError
from catgad.store.codec import (
    EventRecord,
    decode_event,
    owning_command,
    rewrite_target,
    rewritten_body,
)
from catgad.store.protocol import AppendResult
from catgad.store.sqlite_writer import each_in_savepoint

SCHEMA_VERSION = 1
_SCHEMA = (
    # position is the rowid: the global order. Rowids are handed out under the
    # write lock and never deleted, so they are gapless and in commit order.
    # A stream's version is its highest event version (UNIQUE index below), so
    # there is no streams table to keep in step.
    """CREATE TABLE IF NOT EXISTS events (
        position INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        time TEXT NOT NULL,
        command_id TEXT NOT NULL,
        body BLOB NOT NULL,
        UNIQUE (stream, version))""",
    # a command's events are versions (version - count, version] of its stream
    """CREATE TABLE IF NOT EXISTS commands (
        command_id TEXT PRIMARY KEY, stream TEXT NOT NULL,
        version INTEGER NOT NULL, count INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        stream TEXT PRIMARY KEY, version INTEGER NOT NULL, state BLOB NOT NULL) WITHOUT ROWID""",
)
INSERT_EVENT = (
    "INSERT INTO events (stream, version, id, type, time, command_id, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_COMMAND = "INSERT INTO commands (command_id, stream, version, count) VALUES (?, ?, ?, ?)"
VERSION_OF = "SELECT version FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1"
_VERSIONS_OF = (  # one statement for every stream of a batch; JSON array parameter
    "SELECT j.value, (SELECT version FROM events WHERE stream = j.value"
    " ORDER BY version DESC LIMIT 1) FROM json_each(?) AS j"
)
_ANY_COMMAND_OF = (
    "SELECT 1 FROM commands WHERE command_id IN (SELECT value FROM json_each(?)) LIMIT 1"
)
_ANY_EVENT_OF = "SELECT 1 FROM events WHERE id IN (SELECT value FROM json_each(?)) LIMIT 1"
_SAVE_SNAPSHOT = (
    "INSERT INTO snapshots (stream, version, state) VALUES (?, ?, ?)"
    " ON CONFLICT (stream) DO UPDATE SET version = excluded.version, state = excluded.state"
    " WHERE excluded.version >= snapshots.version"  # a late, older snapshot keeps the newer
)


def _json(values: list[str]) -> str:
    # a str, not bytes: SQLite's JSON functions refuse a BLOB argument
    return orjson.dumps(values).decode()


class AppendJob(NamedTuple):  # NamedTuples: built per append, and cheaper than dataclasses
    stream: str
    records: list[EventRecord]
    expected: int | None
    command_id: str


class SnapshotJob(NamedTuple):
    stream: str
    version: int
    state: bytes


class RewriteJob(NamedTuple):
    """Replace stored events' data in place (catgad migrate); all or none."""

    events: list[Envelope]


class Appended(NamedTuple):
    """A new append's outcome; the caller has the records to build the envelopes."""

    version: int
    first_position: int


def prepare(path: str, synchronous: str, conn: sqlite3.Connection) -> None:
    """WAL, durability and the schema; idempotent, and safe when two processes race."""
    try:
        conn.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.OperationalError:
        raise StoreError(f"SQLite {sqlite3.sqlite_version} has no JSON functions") from None
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: cannot use WAL mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    # Neither weakens durability. A bigger page cache and fewer, larger
    # checkpoints (the WAL grows to ~40 MB between them) keep the one writer
    # busy for less time per batch; they measured ~10-20 % more appends/s.
    conn.execute("PRAGMA cache_size = -32768")
    conn.execute("PRAGMA wal_autocheckpoint = 10000")
    # the statement journal of a batch's savepoints in memory, not a file opened, written
    # and unlinked in every commit (it only ever undoes a statement within a transaction)
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("BEGIN IMMEDIATE")
    try:
        (have,) = conn.execute("PRAGMA user_version").fetchone()
        if have > SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {have}; this catgad knows {SCHEMA_VERSION}")
        if have < SCHEMA_VERSION:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


def apply(
    conn: sqlite3.Connection, jobs: list[AppendJob | SnapshotJob | RewriteJob]
) -> list[object]:
    """The outcome of each job of a batch, in order (an exception refuses that job only)."""
    appends = [j for j in jobs if isinstance(j, AppendJob)]
    outcomes = iter(_appends(conn, appends) if appends else [])
    done: list[object] = []
    for job in jobs:
        if isinstance(job, SnapshotJob):  # its own table: order against appends is moot
            conn.execute(_SAVE_SNAPSHOT, (job.stream, job.version, job.state))
            done.append(None)
        elif isinstance(job, RewriteJob):  # rows in place: no version or position moves
            done.extend(each_in_savepoint(conn, [job], _rewrite))
        else:
            done.append(next(outcomes))
    return done


def _rewrite(conn: sqlite3.Connection, job: RewriteJob) -> int:
    for event in job.events:
        stream, version = rewrite_target(event)
        row = conn.execute(
            "SELECT body FROM events WHERE stream = ? AND version = ?", (stream, version)
        ).fetchone()
        if row is None:
            raise StoreError(f"event {event.id!r}: {stream!r} has no version {version}")
        conn.execute(
            "UPDATE events SET body = ? WHERE stream = ? AND version = ?",
            (rewritten_body(row[0], event), stream, version),
        )
    return len(job.events)


def _appends(conn: sqlite3.Connection, jobs: list[AppendJob]) -> list[object]:
    conn.execute("SAVEPOINT bulk")
    try:
        outcomes = _bulk_append(conn, jobs)
    except sqlite3.IntegrityError:  # a re-sent command or event id: sort it out one by one
        outcomes = None
    if outcomes is None:
        conn.execute("ROLLBACK TO bulk")
    conn.execute("RELEASE bulk")
    return each_in_savepoint(conn, jobs, _append_one) if outcomes is None else outcomes


def _bulk_append(conn: sqlite3.Connection, jobs: list[AppendJob]) -> list[object] | None:
    """All appends of a batch in a few statements; None when a job needs the careful path.

    Nothing is looked up before writing: the unique indexes on event and command
    ids catch a re-send (IntegrityError), and an append refused for its version
    is checked afterwards for being a re-send.
    """
    streams = list({j.stream: None for j in jobs})
    rows = conn.execute(_VERSIONS_OF, (_json(streams),)).fetchall()
    versions: dict[str, int] = {stream: version or 0 for stream, version in rows}
    events: list[tuple[str, int, str, str, str, str, bytes]] = []
    commands: list[tuple[str, str, int, int]] = []
    outcomes: list[object] = []
    refused: list[AppendJob] = []
    for job in jobs:
        current = versions[job.stream]
        if job.expected is not None and job.expected != current:
            outcomes.append(ConcurrencyError(job.stream, job.expected, current))
            refused.append(job)
            continue
        offset = len(events)
        for r in job.records:
            current += 1
            events.append((job.stream, current, r.id, r.type, r.time, job.command_id, r.body))
        versions[job.stream] = current
        commands.append((job.command_id, job.stream, current, len(job.records)))
        outcomes.append(Appended(current, offset))  # offset in this batch, for now
    if events:
        conn.executemany(INSERT_EVENT, events)
        # one writer, one statement: the rows got consecutive rowids ending here
        base = conn.execute("SELECT last_insert_rowid()").fetchone()[0] - len(events) + 1
        outcomes = [
            Appended(o.version, base + o.first_position) if isinstance(o, Appended) else o
            for o in outcomes
        ]
    conn.executemany(_INSERT_COMMAND, commands)
    # A refused append whose command or events are stored (before, or earlier in
    # this batch) is a re-send, answered with the first result whatever it expected.
    if refused and (
        conn.execute(_ANY_COMMAND_OF, (_json([j.command_id for j in refused]),)).fetchone()
        or conn.execute(
            _ANY_EVENT_OF, (_json([r.id for j in refused for r in j.records]),)
        ).fetchone()
    ):
        return None
    return outcomes


def _append_one(conn: sqlite3.Connection, job: AppendJob) -> AppendResult | Appended:
    """One append, checked against everything already stored; runs in its own savepoint."""
    repeat = _repeat_of(conn, job)
    if repeat is not None:  # a re-sent command is answered whatever version it expected
        return repeat
    row = conn.execute(VERSION_OF, (job.stream,)).fetchone()
    current: int = 0 if row is None else row[0]
    if job.expected is not None and job.expected != current:
        raise ConcurrencyError(job.stream, job.expected, current)
    rows = [
        (job.stream, current + 1 + i, r.id, r.type, r.time, job.command_id, r.body)
        for i, r in enumerate(job.records)
    ]
    version = current + len(rows)
    first_position = 0
    try:
        if rows:
            conn.executemany(INSERT_EVENT, rows)
            first_position = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            first_position -= len(rows) - 1
        conn.execute(_INSERT_COMMAND, (job.command_id, job.stream, version, len(rows)))
    except sqlite3.IntegrityError as exc:  # _repeat_of ruled out every clash we know of
        raise StoreError(f"stream {job.stream!r}: {exc}") from None
    return Appended(version, first_position)


def _repeat_of(conn: sqlite3.Connection, job: AppendJob) -> AppendResult | None:
    """The first result when this append repeats an earlier one (by command or event ids)."""
    first = command_result(conn, job.command_id, duplicate=True)
    if first is not None:
        if first.stream != job.stream:
            raise IdempotencyKeyReused(job.command_id, f"stream {first.stream!r}")
        return first
    ids = [r.id for r in job.records]
    stored: dict[str, str] = dict(
        conn.execute(
            "SELECT id, command_id FROM events WHERE id IN (SELECT value FROM json_each(?))",
            (_json(ids),),
        ).fetchall()
    )

    def shape(owner: str) -> tuple[str, int]:
        row = conn.execute(
            "SELECT stream, count FROM commands WHERE command_id = ?", (owner,)
        ).fetchone()
        return (row[0], row[1]) if row else ("", -1)

    owner = owning_command(job.stream, ids, stored, shape)
    return None if owner is None else command_result(conn, owner, duplicate=True)


def command_result(
    conn: sqlite3.Connection, command_id: str, *, duplicate: bool
) -> AppendResult | None:
    """The recorded result of a command id, read back from the tables."""
    row = conn.execute(
        "SELECT stream, version, count FROM commands WHERE command_id = ?", (command_id,)
    ).fetchone()
    if row is None:
        return None
    stream, version, count = row
    rows = conn.execute(
        "SELECT position, version, body FROM events"
        " WHERE stream = ? AND version > ? AND version <= ? ORDER BY version",
        (stream, version - count, version),
    ).fetchall()
    events = [decode_event(body, stream, v, p) for p, v, body in rows]
    return AppendResult(stream, command_id, version, events, duplicate)
