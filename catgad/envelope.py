"""The CloudEvents 1.0 envelope every command and event travels in, and its JSON codec."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

SPECVERSION = "1.0"
JSON = "application/json"

# Attributes with a fixed meaning; anything else in a structured event is an extension.
CORE_ATTRIBUTES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
        "correlationid",
        "causationid",
        "streamversion",
        "dataschemaversion",
    }
)
_REQUIRED = ("id", "source", "type")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class _RandomPool:
    """Random bytes fetched 64 KiB at a time.

    uuid4() makes one getrandom() system call per id, and every call gives up
    the GIL; with the store's threads busy, winning it back cost more than the
    rest of a command. Slicing a pool keeps the same kernel randomness.
    """

    _SIZE = 65536

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._at = 0

    def take16(self) -> bytes:
        with self._lock:
            if self._at + 16 > len(self._buf):
                self._buf = os.urandom(self._SIZE)
                self._at = 0
            chunk = self._buf[self._at : self._at + 16]
            self._at += 16
            return chunk

    def reset(self) -> None:
        self._buf = b""
        self._at = 0


_POOL = _RandomPool()
# a forked child must not hand out the ids its parent still holds
os.register_at_fork(after_in_child=_POOL.reset)


def new_id() -> str:
    """A time-ordered UUID string (version 7, RFC 9562): the Unix time in milliseconds,
    then 74 random bits.

    Ids made one after another sort together, so a store's unique index on them
    (the SQLite store's command and event ids) grows at its end: a commit writes
    a few index pages, not one page per id (random version 4 ids cost the store's
    writer twice the time per append: bench/RESULTS-http.md).
    """
    raw = bytearray(_POOL.take16())
    raw[:6] = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    # written out rather than taken from catgad.ids: core modules import only errors
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_second: tuple[int, str] = (-1, "")  # the last second stamped, and its text


def rfc3339_micros(micros: int) -> str:
    """Microseconds since the epoch as RFC 3339 in UTC: 2026-01-02T03:04:05.678901Z, the
    envelope's time format.

    Every command and event is stamped: the date and time of day are formatted once
    a second, the microseconds each time."""
    global _second
    seconds, fraction = divmod(micros, 1_000_000)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{_second[1]}.{fraction:06d}Z"


def now_rfc3339() -> str:
    return rfc3339_micros(time.time_ns() // 1000)


@dataclass(slots=True)
class Envelope:
    """A CloudEvent: a command on its way in or an event in a stream.

    `streamversion` is the 1-based position in the stream, set on stored events.
    `position` is the store's global position, known only for events read back
    from a store; it is not part of the wire format.
    """

    type: str
    data: dict[str, Any]
    id: str = field(default_factory=new_id)
    source: str = "catgad"
    subject: str | None = None
    time: str = field(default_factory=now_rfc3339)
    datacontenttype: str = JSON
    correlationid: str | None = None
    causationid: str | None = None
    streamversion: int | None = None
    dataschemaversion: int | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        out["time"] = self.time
        out["datacontenttype"] = self.datacontenttype
        if self.correlationid is not None:
            out["correlationid"] = self.correlationid
        if self.causationid is not None:
            out["causationid"] = self.causationid
        if self.streamversion is not None:
            out["streamversion"] = self.streamversion
        if self.dataschemaversion is not None:
            out["dataschemaversion"] = self.dataschemaversion
        out.update(self.extensions)
        out["data"] = self.data
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def with_(self, **changes: Any) -> Envelope:
        return replace(self, **changes)


class EnvelopeError(ValueError):
    """A structured CloudEvent could not be decoded; says which attribute and why."""


def is_cloudevent(body: Any) -> bool:
    """A JSON body is taken as a whole CloudEvent when it says so with `specversion`."""
    return isinstance(body, dict) and "specversion" in body


def from_dict(obj: Any) -> Envelope:
    if not isinstance(obj, dict):
        raise EnvelopeError("a CloudEvent must be a JSON object")
    if obj.get("specversion") != SPECVERSION:
        raise EnvelopeError(f"specversion must be {SPECVERSION!r}, got {obj.get('specversion')!r}")
    for name in _REQUIRED:
        value = obj.get(name)
        if not isinstance(value, str) or not value:
            raise EnvelopeError(f"attribute {name!r} must be a non-empty string")
    data = obj.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EnvelopeError("attribute 'data' must be a JSON object")
    for name in ("streamversion", "dataschemaversion"):
        value = obj.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise EnvelopeError(f"attribute {name!r} must be an integer")
    for name in ("subject", "time", "correlationid", "causationid", "datacontenttype"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            raise EnvelopeError(f"attribute {name!r} must be a string")
    return Envelope(
        type=obj["type"],
        data=data,
        id=obj["id"],
        source=obj["source"],
        subject=obj.get("subject"),
        time=obj.get("time") or now_rfc3339(),
        datacontenttype=obj.get("datacontenttype") or JSON,
        correlationid=obj.get("correlationid"),
        causationid=obj.get("causationid"),
        streamversion=obj.get("streamversion"),
        dataschemaversion=obj.get("dataschemaversion"),
        extensions={k: v for k, v in obj.items() if k not in CORE_ATTRIBUTES},
    )


def is_rfc3339(text: str) -> bool:
    """Whether `text` is an RFC 3339 date-time (what a CloudEvent's `time` is), such as
    2026-01-02T03:04:05.678Z or 2026-01-02t03:04:05+01:00."""
    if _RFC3339.fullmatch(text) is None:
        return False
    try:  # the pattern has the shape; the calendar has the rest (no 31 April)
        datetime.fromisoformat(text.upper().replace("Z", "+00:00").replace(":60", ":59"))
    except ValueError:
        return False
    return True


def from_json(raw: bytes | str) -> Envelope:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"not JSON: {exc}") from exc
    return from_dict(obj)
