"""The PostgreSQL store's tables, statements, connection settings, and what a write decides.

Every statement names its tables through the store's schema, rendered once per
store (`Statements`). A batch's values travel as arrays (`unnest`, `= ANY`),
so each statement has one text whatever the batch size and psycopg prepares
it once per connection; the arrays are sent in binary (`%b`), which spares
psycopg escaping every element. `plan_batch` is pure: given what the batch
read under the head lock, it decides each append's fate with the rules of
the memory store (codec.owning_command for re-sent events) and returns the
rows to write. Nothing here talks to the server: psycopg is imported for its
conninfo parser and error type only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from catgad.errors import CatgadError, ConcurrencyError, IdempotencyKeyReused, StoreError
from catgad.store.codec import EventRecord, owning_command

SCHEMA_VERSION = 1
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# {s} is the quoted schema. `head` is one row: the lock every writer takes
# first, and the last global position handed out. Positions come from it, in
# the order writers hold the lock, so they are contiguous and in commit order.
# A stream's version is its highest event version (the UNIQUE index below
# answers it), so no streams table has to be kept in step with the events.
# Bodies are `json` (text, kept byte for byte; jsonb would turn 1e20 into an
# integer) so they can still be queried with ->, ->>.
_DDL = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE IF NOT EXISTS {s}.head (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        position bigint NOT NULL,
        schema_version integer NOT NULL)""",
    "INSERT INTO {s}.head (position, schema_version) VALUES (0, {v}) ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS {s}.events (
        position bigint PRIMARY KEY,
        stream text NOT NULL,
        version integer NOT NULL,
        id text NOT NULL UNIQUE,
        type text NOT NULL,
        time text NOT NULL,
        command_id text NOT NULL,
        body json NOT NULL,
        CONSTRAINT events_stream_version UNIQUE (stream, version))""",
    # a command's events are versions (version - count, version] of its stream
    """CREATE TABLE IF NOT EXISTS {s}.commands (
        command_id text PRIMARY KEY,
        stream text NOT NULL,
        version integer NOT NULL,
        count integer NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {s}.snapshots (
        stream text PRIMARY KEY,
        version integer NOT NULL,
        state json NOT NULL)""",
)


def quote_schema(schema: str) -> str:
    """The schema as a quoted identifier; only plain names are accepted, so none needs escaping."""
    if not _NAME.fullmatch(schema):
        raise StoreError(
            f"postgres schema {schema!r} must be a letter or _ then letters, digits or _ (max 63)"
        )
    return f'"{schema}"'


class Statements:
    """Every statement of the store, with its schema filled in."""

    def __init__(self, schema: str) -> None:
        s = quote_schema(schema)
        self.ddl = tuple(d.format(s=s, v=SCHEMA_VERSION) for d in _DDL)
        # A write takes the lock in a statement of its own: a READ COMMITTED statement
        # reads from the snapshot it started with, so reads in the same statement as the
        # lock would not see what the previous lock holder just committed.
        self.lock_head = f"SELECT position, schema_version FROM {s}.head FOR UPDATE"
        # Then one statement reads all a batch depends on, as (kind, key, text, text, n):
        # v: stream, version · c: command id, stream, count · o: stored event id, its
        # command id, that command's stream and count.
        self.known = (
            "SELECT 'v', q.stream, NULL, NULL, coalesce((SELECT e.version"
            f" FROM {s}.events e WHERE e.stream = q.stream ORDER BY e.version DESC LIMIT 1), 0)"
            " FROM unnest(%b::text[]) AS q(stream)"
            f" UNION ALL SELECT 'c', command_id, stream, NULL, count FROM {s}.commands"
            " WHERE command_id = ANY(%b::text[])"
            f" UNION ALL SELECT 'o', e.id, e.command_id, c.stream, c.count FROM {s}.events e"
            f" JOIN {s}.commands c ON c.command_id = e.command_id WHERE e.id = ANY(%b::text[])"
        )
        # and one statement writes it: events, commands, the new head
        self.write = (
            f"WITH events AS (INSERT INTO {s}.events"
            " (position, stream, version, id, type, time, command_id, body)"
            " SELECT * FROM unnest(%b::bigint[], %b::text[], %b::integer[], %b::text[],"
            " %b::text[], %b::text[], %b::text[], %b::text[]::json[])),"
            f" commands AS (INSERT INTO {s}.commands (command_id, stream, version, count)"
            " SELECT * FROM unnest(%b::text[], %b::text[], %b::integer[], %b::integer[]))"
            f" UPDATE {s}.head SET position = %s WHERE position <> %s"
        )
        self.stream_version = f"SELECT coalesce(max(version), 0) FROM {s}.events WHERE stream = %s"
        self.read_stream = (
            f"SELECT position, version, body FROM {s}.events"
            " WHERE stream = %s AND version > %s ORDER BY version LIMIT %s"
        )
        self.read_all = (
            f"SELECT position, stream, version, body FROM {s}.events"
            " WHERE position > %s ORDER BY position LIMIT %s"
        )
        # one row per event; one row with NULL event columns for a command without events
        self.command_result = (
            f"SELECT c.stream, c.version, e.position, e.version, e.body FROM {s}.commands c"
            f" LEFT JOIN {s}.events e ON e.stream = c.stream"
            " AND e.version > c.version - c.count AND e.version <= c.version"
            " WHERE c.command_id = %s ORDER BY e.version"
        )
        self.save_snapshot = (
            f"INSERT INTO {s}.snapshots (stream, version, state) VALUES (%s, %s, %s::text::json)"
            " ON CONFLICT (stream) DO UPDATE SET version = excluded.version, state = excluded.state"
            # a late, older snapshot keeps the newer one
            f" WHERE excluded.version >= {s}.snapshots.version"
        )
        self.load_snapshot = f"SELECT version, state FROM {s}.snapshots WHERE stream = %s"


class Job(NamedTuple):
    """One append waiting for the writer."""

    stream: str
    records: list[EventRecord]
    expected: int | None
    command_id: str


class Accepted(NamedTuple):
    """An append that will be written: its stream version after it, its first position."""

    version: int
    first_position: int


class Repeat(NamedTuple):
    """An append that repeats command `command_id`: answered with that command's first result."""

    command_id: str


Outcome = Accepted | Repeat | CatgadError  # an error refuses that append alone


@dataclass(slots=True)
class Known:
    """What a batch read under the head lock: the state its decisions depend on."""

    head: int  # last position handed out
    versions: dict[str, int]  # stream -> current version, for every stream of the batch
    commands: dict[str, tuple[str, int]]  # command id -> (stream, event count)
    owners: dict[str, str]  # stored event id -> the command id that wrote it


@dataclass(slots=True)
class Plan:
    """The outcome of each job, and the columns of the rows to insert."""

    outcomes: list[Outcome]
    head: int  # the new last position
    positions: list[int] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    command_ids: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    new_commands: list[str] = field(default_factory=list)
    new_streams: list[str] = field(default_factory=list)
    new_versions: list[int] = field(default_factory=list)
    new_counts: list[int] = field(default_factory=list)

    def write_params(self) -> tuple[object, ...]:
        """The parameters of Statements.write (the head is not touched when it did not move)."""
        return (
            self.positions, self.streams, self.versions, self.ids, self.types, self.times,
            self.command_ids, self.bodies,
            self.new_commands, self.new_streams, self.new_versions, self.new_counts,
            self.head, self.head,
        )  # fmt: skip


def plan_batch(jobs: Sequence[Job], known: Known) -> Plan:
    """Decide every job in order, each seeing the ones before it as already written."""
    plan = Plan([], known.head)
    versions = dict(known.versions)
    commands = dict(known.commands)
    owners = dict(known.owners)
    for job in jobs:
        try:
            plan.outcomes.append(_decide(job, plan, versions, commands, owners))
        except CatgadError as exc:  # this job's refusal; the others go on
            plan.outcomes.append(exc)
    return plan


def _decide(
    job: Job,
    plan: Plan,
    versions: dict[str, int],
    commands: dict[str, tuple[str, int]],
    owners: dict[str, str],
) -> Outcome:
    first = commands.get(job.command_id)
    if first is not None:  # a re-sent command is answered whatever version it expected
        if first[0] != job.stream:
            raise IdempotencyKeyReused(job.command_id, f"stream {first[0]!r}")
        return Repeat(job.command_id)
    ids = [r.id for r in job.records]
    stored = {i: owners[i] for i in ids if i in owners}
    owner = owning_command(job.stream, ids, stored, commands.__getitem__)
    if owner is not None:
        return Repeat(owner)
    current = versions.get(job.stream, 0)
    if job.expected is not None and job.expected != current:
        raise ConcurrencyError(job.stream, job.expected, current)
    first_position = plan.head + 1
    for r in job.records:
        plan.head += 1
        current += 1
        plan.positions.append(plan.head)
        plan.streams.append(job.stream)
        plan.versions.append(current)
        plan.ids.append(r.id)
        plan.types.append(r.type)
        plan.times.append(r.time)
        plan.command_ids.append(job.command_id)
        plan.bodies.append(r.body.decode())  # orjson wrote UTF-8; json columns take text
        owners[r.id] = job.command_id
    versions[job.stream] = current
    commands[job.command_id] = (job.stream, len(job.records))
    plan.new_commands.append(job.command_id)
    plan.new_streams.append(job.stream)
    plan.new_versions.append(current)
    plan.new_counts.append(len(job.records))
    return Accepted(current, first_position)


def known_from(head: int, rows: Sequence[tuple[str, str, str | None, str | None, int]]) -> Known:
    """Known from the head position and the rows of Statements.known."""
    known = Known(head, {}, {}, {})
    for kind, key, a, b, n in rows:
        if kind == "v":
            known.versions[key] = n
        elif kind == "c" and a is not None:
            known.commands[key] = (a, n)
        elif kind == "o" and a is not None and b is not None:
            known.owners[key] = a
            known.commands[a] = (b, n)
    return known


def conninfo(url: str, connect_timeout: float, statement_timeout: float) -> str:
    """The URL plus our defaults; what the URL says wins (its `options` come last)."""
    params = conninfo_to_dict(url)
    params.setdefault("connect_timeout", max(2, math.ceil(connect_timeout)))  # libpq: whole s, >= 2
    params.setdefault("application_name", "catgad")
    # keepalives notice a peer that vanished without closing the connection
    for key, value in (("keepalives", 1), ("keepalives_idle", 10),
                       ("keepalives_interval", 5), ("keepalives_count", 3)):  # fmt: skip
        params.setdefault(key, value)
    ms = max(1, int(statement_timeout * 1000))
    ours = f"-c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}"
    params["options"] = f"{ours} {params['options']}" if params.get("options") else ours
    return make_conninfo("", **params)


def connection_lost(exc: psycopg.OperationalError) -> bool:
    """The connection itself failed (not the statement): libpq saw it drop, or the server
    ended the session (class 08, or 57P01-57P03: shutdown, crash, starting up)."""
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def refuse_nul(job: Job) -> None:
    """PostgreSQL text cannot hold NUL; refuse it here rather than fail a whole batch."""
    texts = [("stream", job.stream), ("command id", job.command_id)]
    for r in job.records:
        texts += [("event id", r.id), ("event type", r.type), ("event time", r.time)]
    for what, text in texts:
        if "\x00" in text:
            raise StoreError(f"{what} {text!r} contains NUL, which PostgreSQL cannot store")
