"""This process's own appends, by position, for its live projections to take without a read.

Under load a live projection's batch is mostly what this daemon has just appended, and
reading it back cost a reader-thread hop, the rows and their decoding per batch, for
each projection. The engine's append results carry those events, decoded and with their
positions, so the feed keeps the last `keep` of them. A projection asking for the events
after position P gets them from here only when the feed holds P+1 and on without a gap;
a position it lacks (another process appended it: a worker, a replica, a CLI) or one
already let go sends the projection to the store, as before. The events come from this
process's engine, at their types' newest versions: nothing to upcast. Only stores whose
positions are their read order (Capability.GAPLESS_GLOBAL_ORDER) are fed from: there, the
event at P+1 is the next one a read after P returns, whoever appended it. A batch is fed
only when the feed holds every position from P+1 to its head (or to the batch's limit):
where other processes' appends interleave with this one's, the store is read as before.
"""

from __future__ import annotations

from catgad.envelope import Envelope
from catgad.store.protocol import AppendResult

DEFAULT_KEEP = 4096  # events kept: a live projection's batches, several times over


class AppendFeed:
    """The last `keep` events appended by this process, by global position."""

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self.keep = keep
        self.head = 0  # the highest position added
        self._events: dict[int, Envelope] = {}  # in the order added: oldest first

    def add(self, result: AppendResult) -> None:
        for event in result.events:
            position = event.position
            if position is None or position in self._events:
                continue  # a store without positions, or a repeat's first result
            self._events[position] = event
            self.head = max(self.head, position)
        while len(self._events) > self.keep:
            del self._events[next(iter(self._events))]

    def after(self, position: int, limit: int) -> list[Envelope]:
        """The events at position+1, position+2, ... up to `limit`, or [] when one is missing
        before that or before the head: with another process appending between this one's
        appends, one read of the store takes the whole batch, where the feed would give it
        up to the first gap only."""
        found: list[Envelope] = []
        events = self._events
        end = min(position + limit, self.head)
        for at in range(position + 1, end + 1):
            event = events.get(at)
            if event is None:
                return []
            found.append(event)
        return found
