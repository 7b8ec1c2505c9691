"""A projection's batches read as records (StoredEvent) where the store offers it.

read_all builds a whole Envelope per event; a table projection's mapping
needs only the type and the data (most often), so on a store with
`read_records` (SQLite, and UpcastingStore over it, which upcasts records as
it upcasts envelopes) a batch is read as records, and the bodies of events
the projection does not map are not even decoded. Envelopes are built only
when something needs one (an expression reading `event`, a poison event, a
metric of the event's time): `Envelopes` is the batch seen as envelopes,
each decoded on first look.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any, Protocol, overload

from catgad.envelope import Envelope
from catgad.store.codec import StoredEvent


class RecordReader(Protocol):
    async def read_records(
        self, *, after: int = 0, limit: int = 1000, types: Collection[str] | None = None
    ) -> list[StoredEvent]: ...


def record_reader(store: Any) -> RecordReader | None:
    """`store` when it can read records, else None (read_all then)."""
    inner = getattr(store, "inner", store)  # UpcastingStore: as capable as what it wraps
    if callable(getattr(inner, "read_records", None)) and callable(
        getattr(store, "read_records", None)
    ):
        reader: RecordReader = store
        return reader
    return None


class Envelopes(Sequence[Envelope]):
    """A batch of records as a sequence of envelopes, each decoded when first looked at."""

    __slots__ = ("_decoded", "records")

    def __init__(self, records: Sequence[StoredEvent]) -> None:
        self.records = records
        self._decoded: list[Envelope | None] = [None] * len(records)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> Envelope: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Envelope]: ...

    def __getitem__(self, index: int | slice) -> Envelope | Sequence[Envelope]:
        if isinstance(index, slice):  # still lazy: a count of a slice decodes nothing
            return Envelopes(self.records[index])
        event = self._decoded[index]
        if event is None:
            event = self._decoded[index] = self.records[index].envelope()
        return event

    def __iter__(self) -> Iterator[Envelope]:
        for index in range(len(self.records)):
            yield self[index]

    def last_position(self) -> int:
        return self.records[-1].position if self.records else 0


def event_times(events: Sequence[Envelope]) -> list[str]:
    """Each event's `time`; for a batch read as records, without an envelope per event."""
    if isinstance(events, Envelopes):
        return [str(record.document().get("time", "")) for record in events.records]
    return [event.time for event in events]
