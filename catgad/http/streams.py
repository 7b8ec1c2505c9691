"""`GET /streams`: the streams written most recently, found in the tail of the store's log.

The store keeps no index of its streams; the newest SCAN events are read instead
(one `read_all`, after finding the head: catgad.projections.progress) and each
stream is listed once, newest first, with its last event. Enough for a person
looking for what just happened (the dashboard's Streams page); a stream written
before that window is opened by its id.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catgad.http.access import Access
from catgad.http.routes import json_response, query_int
from catgad.projections.progress import head_position
from catgad.store.protocol import EventStore

SCAN = 1000  # events read from the tail of the log


class StreamIndexEndpoints:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def routes(self, access: Access) -> list[Route]:
        return [access.route("read", "/streams", self.recent, "GET")]

    async def recent(self, request: Request) -> Response:
        limit = query_int(request, "limit", 50, 1, 500)
        head = await head_position(self.store)
        events = await self.store.read_all(after=max(0, head - SCAN), limit=SCAN)
        found: dict[str, dict[str, Any]] = {}
        for event in reversed(events):
            if not event.subject or event.subject in found:
                continue
            found[event.subject] = {
                "stream": event.subject,
                "version": event.streamversion,
                "last_type": event.type,
                "last_time": event.time,
            }
            if len(found) >= limit:
                break
        return json_response(
            {"streams": list(found.values()), "head": head, "scanned": len(events)}
        )
