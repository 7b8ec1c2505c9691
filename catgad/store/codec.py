"""Map envelopes to stored records and back, with the identity rules every store shares.

A stored event is a CloudEvents structured JSON body (orjson) plus the columns
a store indexes. The body holds the subject but not `streamversion`: the store
assigns the version inside its transaction, after the body is encoded, and puts
it back from its own column when decoding. `position` is never stored in the
body either; it is the store's global order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from catgad.envelope import CORE_ATTRIBUTES, Envelope
from catgad.errors import StoreError

# Attributes the Envelope keeps in fields of its own; an extension with one of
# these names would be lost on the way back, so it is refused up front.
_CORE = CORE_ATTRIBUTES


class EventRecord(NamedTuple):
    """One event as a store writes it; the store adds stream, version and position."""

    id: str
    type: str
    time: str
    body: bytes


def encode_event(stream: str, event: Envelope) -> EventRecord:
    """The record of `event` appended to `stream`: its subject becomes the stream id."""
    if event.extensions and not _CORE.isdisjoint(event.extensions):
        clash = sorted(_CORE.intersection(event.extensions))
        raise StoreError(f"event {event.id!r}: extension {clash[0]!r} is a CloudEvents attribute")
    doc = event.to_dict()
    doc["subject"] = stream
    doc.pop("streamversion", None)
    try:
        body = orjson.dumps(doc)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise StoreError(f"event {event.id!r} cannot be stored as JSON: {exc}") from exc
    return EventRecord(event.id, event.type, event.time, body)


def encode_events(stream: str, events: Sequence[Envelope]) -> list[EventRecord]:
    """Records for one append; refuses an event id given twice in the same call."""
    records = [encode_event(stream, e) for e in events]
    if len(records) > 1 and len({r.id for r in records}) != len(records):
        seen: set[str] = set()
        for r in records:
            if r.id in seen:
                raise StoreError(f"duplicate event id {r.id!r} in one append")
            seen.add(r.id)
    return records


def decode_event(body: bytes, stream: str, version: int, position: int) -> Envelope:
    """The stored envelope; trusts the body, which only encode_event wrote."""
    return decode_doc(orjson.loads(body), stream, version, position)


def decode_doc(doc: dict[str, Any], stream: str, version: int, position: int) -> Envelope:
    """The stored envelope from its decoded body."""
    get = doc.get
    # decoding is on every read path: look the extensions up only when there are any
    extensions = {} if _CORE.issuperset(doc) else {k: v for k, v in doc.items() if k not in _CORE}
    return Envelope(
        type=doc["type"],
        data=doc["data"],
        id=doc["id"],
        source=doc["source"],
        subject=stream,
        time=doc["time"],
        datacontenttype=doc["datacontenttype"],
        correlationid=get("correlationid"),
        causationid=get("causationid"),
        streamversion=version,
        dataschemaversion=get("dataschemaversion"),
        extensions=extensions,
        position=position,
    )


class StoredEvent(NamedTuple):
    """An event as a catch-up reads it: the columns a store indexes and, for the types the
    reader asked for, the decoded body (`doc`) and its `data`; for the others both are None,
    as nobody looks at them. A mapping reads the type and the data; `envelope()` builds the
    whole Envelope, as read_all returns it, for whatever needs more."""

    position: int
    stream: str
    version: int
    type: str
    body: bytes
    doc: dict[str, Any] | None
    data: Any

    @property
    def dataschemaversion(self) -> int | None:
        version: int | None = self.document().get("dataschemaversion")
        return version

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.body) if self.doc is None else self.doc
        return doc

    def envelope(self) -> Envelope:
        return decode_doc(self.document(), self.stream, self.version, self.position)

    @classmethod
    def of(cls, event: Envelope) -> StoredEvent:
        """The record of an envelope read back from a store (an upcast one, say)."""
        doc = event.to_dict()
        return cls(
            event.position or 0, event.subject or "", event.streamversion or 0,
            event.type, b"", doc, event.data,
        )  # fmt: skip


def rewritten_body(body: bytes, event: Envelope) -> bytes:
    """The stored `body` with `event`'s data and dataschemaversion, all else kept (migrations).

    `event` must be the stored one (same id), else StoreError: a rewrite never
    moves data from one event to another.
    """
    doc: dict[str, Any] = orjson.loads(body)
    if doc.get("id") != event.id:
        raise StoreError(
            f"event {event.id!r} is not the one stored at {event.subject!r} "
            f"version {event.streamversion} (that is {doc.get('id')!r})"
        )
    doc["data"] = event.data
    if event.dataschemaversion is None:
        doc.pop("dataschemaversion", None)
    else:
        doc["dataschemaversion"] = event.dataschemaversion
    try:
        return orjson.dumps(doc)
    except TypeError as exc:
        raise StoreError(f"event {event.id!r} cannot be stored as JSON: {exc}") from exc


def rewrite_target(event: Envelope) -> tuple[str, int]:
    """The (stream, version) a rewrite of `event` replaces; StoreError when it does not say."""
    if not event.subject or not event.streamversion:
        raise StoreError(f"event {event.id!r}: a rewrite needs its subject and streamversion")
    return event.subject, event.streamversion


def encode_state(state: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(state)
    except TypeError as exc:
        raise StoreError(f"snapshot state cannot be stored as JSON: {exc}") from exc


def decode_state(body: bytes) -> dict[str, Any]:
    state: dict[str, Any] = orjson.loads(body)
    return state


def owning_command(
    stream: str,
    ids: Sequence[str],
    stored: Mapping[str, str],
    command_of: Callable[[str], tuple[str, int]],
) -> str | None:
    """Which earlier command an append of already-stored event ids repeats.

    `stored` maps those of `ids` already in the store to the command that wrote
    them; `command_of` gives that command's (stream, event count). None when no
    id is stored. When the ids are exactly the events of one earlier append on
    the same stream, the append is a re-send and its command id is returned;
    any other overlap is a clash, refused with StoreError.
    """
    if not stored:
        return None
    owners = set(stored.values())
    if len(stored) == len(ids) and len(owners) == 1:
        owner = next(iter(owners))
        owner_stream, count = command_of(owner)
        if owner_stream == stream and count == len(ids):
            return owner
    clash = next(i for i in ids if i in stored)
    raise StoreError(f"duplicate event id {clash!r}: already stored by command {stored[clash]!r}")
