"""What the NATS store writes: subjects, stream configs, the events message, claims, snapshots.

Subjects. A stream id becomes one subject token by `token()`: ASCII letters,
digits, `-` and `_` stay as they are; every other byte of its UTF-8 form is
written `=XX` (two upper-case hex digits), so `.`, `*`, `>`, spaces and
non-ASCII text can never split or widen a subject. The empty id is `=`. A
token longer than 256 characters is replaced by `=H` and the SHA-256 of the
id. The mapping is injective (an `=` is followed by two hex digits, or is
alone, or is `=H`), and every token is also a valid JetStream KV key. So
`Order-o1` is `catgad.store.Order-o1`, and `a.b c` is `catgad.store.a=2Eb=20c`
(with the default prefix, DEFAULT_SUBJECT_PREFIX).

The events message. One message per command on `<prefix>.<token>`, with the
headers Nats-Msg-Id (token of the command id) and
Nats-Expected-Last-Subject-Sequence; its payload is a JSON
line `{"c": command id, "s": stream id, "v": version after, "n": events}`,
then one line per event holding codec.encode_event's body (orjson never
writes a raw newline). Stream versions live there; positions come from the
JetStream sequence: event i of the message with sequence q is at
`q * 2**16 + i`, so a command holds at most 65,536 events and positions fit
a signed 64-bit integer up to sequence 2**47.

Claims (KV bucket `<stream>_ids`): `c.<token(command id)>` holds
`{"s": stream id, "l": sequence}`, the JetStream sequence after which the
command's message, if it was published, is the first of that subject to
carry its id; `e.<token(event id)>` holds `{"c": command id}`.
Snapshots (KV bucket `<stream>_snapshots`) hold a JSON line
`{"s": stream id, "v": version}` and the state's JSON. Leases and
checkpoints live in KV bucket `<stream>_coord` (nats_coordination).
Rewritten messages (KV bucket `<stream>_rewrites`, key: the message's
sequence) are whole events messages in the format above (nats_rewrite).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from catgad.envelope import Envelope
from catgad.store.codec import decode_event, decode_state, encode_state
from catgad.store.protocol import Snapshot

INDEX_BITS = 16
MAX_EVENTS = 1 << INDEX_BITS  # events one command may append
MAX_TOKEN = 256
STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")
_PREFIX = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")
_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

# JetStream headers the store sets or reads
EXPECT_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
MSG_ID = "Nats-Msg-Id"
KV_OPERATION = "KV-Operation"  # "DEL" or "PURGE" marks a deleted KV entry


def token(text: str) -> str:
    """One subject token (and KV key) for any string; see the module docstring."""
    if _SAFE.fullmatch(text):
        out = text
    elif not text:
        return "="
    else:
        raw = text.encode("utf-8", "surrogatepass")
        out = "".join(chr(b) if b in _SAFE_BYTES else f"={b:02X}" for b in raw)
    if len(out) > MAX_TOKEN:
        return "=H" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return out


def position(seq: int, index: int) -> int:
    return (seq << INDEX_BITS) | index


def split_position(pos: int) -> tuple[int, int]:
    """(message sequence, index of the event in it) of a global position."""
    pos = max(pos, 0)
    return pos >> INDEX_BITS, pos & (MAX_EVENTS - 1)


# Not `catgad.events`: that is where the NATS bus, with its default prefix, puts the
# relayed events, and JetStream refuses two streams whose subjects overlap.
DEFAULT_SUBJECT_PREFIX = "catgad.store"


@dataclass(frozen=True, slots=True)
class Names:
    """Every JetStream name and subject one store uses, derived from its two options."""

    stream: str
    prefix: str

    def __post_init__(self) -> None:
        if not STREAM_NAME.fullmatch(self.stream):
            raise ValueError(f"stream {self.stream!r}: use 1-200 letters, digits, '-' or '_'")
        if not _PREFIX.fullmatch(self.prefix):
            raise ValueError(
                f"subject_prefix {self.prefix!r}: dot-separated, no spaces or wildcards"
            )

    @property
    def ids_bucket(self) -> str:
        return f"{self.stream}_ids"

    @property
    def snapshots_bucket(self) -> str:
        return f"{self.stream}_snapshots"

    @property
    def coord_bucket(self) -> str:
        return f"{self.stream}_coord"  # leases and checkpoints (nats_coordination)

    @property
    def rewrites_bucket(self) -> str:
        return f"{self.stream}_rewrites"  # the overlay of rewritten messages (nats_rewrite)

    @property
    def ids_stream(self) -> str:
        return f"KV_{self.ids_bucket}"

    @property
    def snapshots_stream(self) -> str:
        return f"KV_{self.snapshots_bucket}"

    @property
    def coord_stream(self) -> str:
        return f"KV_{self.coord_bucket}"

    @property
    def rewrites_stream(self) -> str:
        return f"KV_{self.rewrites_bucket}"

    @property
    def all_events(self) -> str:
        return f"{self.prefix}.>"

    def all_streams(self) -> list[str]:
        return [
            self.stream,
            self.ids_stream,
            self.snapshots_stream,
            self.coord_stream,
            self.rewrites_stream,
            self.index_stream,
        ]

    @property
    def index_stream(self) -> str:
        """The process index (nats_process_index): instance rows and timer entries."""
        return f"{self.stream}_pidx"

    @property
    def index_subjects(self) -> str:
        return f"$PIDX.{self.stream}"

    def subject(self, stream_id: str) -> str:
        return f"{self.prefix}.{token(stream_id)}"

    def command_key(self, command_id: str) -> str:
        return f"$KV.{self.ids_bucket}.c.{token(command_id)}"

    def event_key(self, event_id: str) -> str:
        return f"$KV.{self.ids_bucket}.e.{token(event_id)}"

    def rewrite_key(self, seq: int) -> str:
        return f"$KV.{self.rewrites_bucket}.{seq}"

    def snapshot_key(self, stream_id: str) -> str:
        return f"$KV.{self.snapshots_bucket}.{token(stream_id)}"

    def configs(self, storage: str, replicas: int, window_s: float) -> list[dict[str, Any]]:
        """JetStream stream configs: the events log, four KV buckets and the process index."""
        common: dict[str, Any] = {
            "retention": "limits",
            "storage": storage,
            "num_replicas": replicas,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msg_size": -1,
            "allow_direct": True,  # point reads without the JetStream API queue
            "duplicate_window": int(window_s * 1e9),
        }
        # the log is append-only: no deletes, no purges (deleting the whole stream stays possible)
        events = {
            **common,
            "name": self.stream,
            "subjects": [self.all_events],
            "discard": "old",
            "max_msgs_per_subject": -1,
            "deny_delete": True,
            "deny_purge": True,
        }
        buckets = [
            {
                **common,
                "name": f"KV_{bucket}",
                "subjects": [f"$KV.{bucket}.>"],
                "discard": "new",
                "max_msgs_per_subject": 1,
                "allow_rollup_hdrs": True,
                "deny_delete": True,
                "deny_purge": False,
            }
            for bucket in (
                self.ids_bucket,
                self.snapshots_bucket,
                self.coord_bucket,
                self.rewrites_bucket,
            )
        ]
        index = {  # rows kept one per subject by rollups; timer entries deleted one by one
            **common,
            "name": self.index_stream,
            "subjects": [f"{self.index_subjects}.>"],
            "discard": "old",
            "max_msgs_per_subject": -1,
            "allow_rollup_hdrs": True,
            "deny_delete": False,
            "deny_purge": False,
        }
        return [events, *buckets, index]


@dataclass(frozen=True, slots=True)
class Stored:
    """One command's message as stored: its id, stream, the version it led to, its events."""

    command: str
    stream: str
    version: int
    bodies: list[bytes]

    @property
    def first_version(self) -> int:
        return self.version - len(self.bodies) + 1

    def envelopes(self, seq: int) -> list[Envelope]:
        first = self.first_version
        return [
            decode_event(body, self.stream, first + i, position(seq, i))
            for i, body in enumerate(self.bodies)
        ]

    def event_ids(self) -> list[str]:
        return [str(orjson.loads(body)["id"]) for body in self.bodies]


def encode_message(command: str, stream: str, version: int, bodies: list[bytes]) -> bytes:
    meta = orjson.dumps({"c": command, "s": stream, "v": version, "n": len(bodies)})
    return b"\n".join([meta, *bodies])


def decode_message(data: bytes) -> Stored | None:
    """The command a message holds; None for a message catgad did not write."""
    lines = data.split(b"\n")
    try:
        meta = orjson.loads(lines[0])
        stored = Stored(str(meta["c"]), str(meta["s"]), int(meta["v"]), lines[1:])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return stored if meta.get("n") == len(stored.bodies) else None


@dataclass(frozen=True, slots=True)
class CommandClaim:
    stream: str
    lower: int  # the command's message, if any, is after this sequence on the stream's subject


def encode_command_claim(stream: str, lower: int) -> bytes:
    return orjson.dumps({"s": stream, "l": lower})


def decode_command_claim(data: bytes) -> CommandClaim | None:
    try:
        doc = orjson.loads(data)
        return CommandClaim(str(doc["s"]), int(doc["l"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def encode_event_claim(command: str) -> bytes:
    return orjson.dumps({"c": command})


def decode_event_claim(data: bytes) -> str | None:
    try:
        return str(orjson.loads(data)["c"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def encode_snapshot(snapshot: Snapshot) -> bytes:
    meta = orjson.dumps({"s": snapshot.stream, "v": snapshot.version})
    return meta + b"\n" + encode_state(snapshot.state)


def decode_snapshot(data: bytes) -> Snapshot | None:
    meta, _, state = data.partition(b"\n")
    try:
        doc = orjson.loads(meta)
        return Snapshot(str(doc["s"]), int(doc["v"]), decode_state(state))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def parse_time(stamp: str) -> float:
    """Seconds since the epoch of a JetStream timestamp (RFC 3339 with nanoseconds)."""
    head, dot, frac = stamp.rstrip("Z").partition(".")
    text = head + (dot + frac[:6] if dot else "") + "+00:00"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0
