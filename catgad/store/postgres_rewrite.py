"""Rewriting stored events in place in PostgreSQL: what `catgad migrate` needs of the store.

One transaction: lock the rows (FOR UPDATE), check each is the event named,
then one UPDATE ... FROM unnest of the new bodies. Only `body` changes, so no
position, version or id moves, and appends go on meanwhile: they never touch
existing rows, and the head lock (see postgres.py) is not taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from catgad.envelope import Envelope
from catgad.errors import StoreError
from catgad.store.codec import rewrite_target, rewritten_body
from catgad.store.postgres_sql import quote_schema

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


async def rewrite_events(conn: Conn, schema: str, events: Sequence[Envelope]) -> int:
    """Replace the events' data and dataschemaversion, all or none; returns how many."""
    if not events:
        return 0
    s = quote_schema(schema)
    targets = [rewrite_target(e) for e in events]
    streams = [stream for stream, _ in targets]
    versions = [version for _, version in targets]
    async with conn.transaction():
        cur = await conn.execute(
            f"SELECT e.stream, e.version, e.body FROM {s}.events e"
            " JOIN unnest(%s::text[], %s::integer[]) AS t(stream, version)"
            " ON e.stream = t.stream AND e.version = t.version FOR UPDATE OF e",
            (streams, versions),
        )
        stored: dict[tuple[str, int], bytes] = {
            (stream, version): body for stream, version, body in await cur.fetchall()
        }
        bodies: list[str] = []
        for event, target in zip(events, targets, strict=True):
            body = stored.get(target)
            if body is None:
                raise StoreError(f"event {event.id!r}: {target[0]!r} has no version {target[1]}")
            bodies.append(rewritten_body(body, event).decode())
        await conn.execute(
            f"UPDATE {s}.events e SET body = u.body::json"
            " FROM unnest(%s::text[], %s::integer[], %s::text[]) AS u(stream, version, body)"
            " WHERE e.stream = u.stream AND e.version = u.version",
            (streams, versions, bodies),
        )
    return len(events)
