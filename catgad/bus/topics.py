"""Map logical topic names, groups and keys to broker names that are always legal and never collide.

A logical topic (`orders.events`), a consumer group (`projector A`) or a key
(a stream id such as `Order-o1`, or any user text) may hold characters a
broker forbids: NATS subject tokens cannot hold `.`, `*`, `>` or blanks,
stream and consumer names even less, Kafka topics only `[A-Za-z0-9._-]`.
`token()` escapes such text reversibly into `[A-Za-z0-9_-]`, a set every
broker accepts, so two different names never meet in one broker name.

    token("Order-o1")    == "Order-o1"
    token("a.b c")       == "a_2Eb_20c"
    token("")            == "_"          (no escape sequence is a lone "_")

Keys are spread over partitions with Kafka's own partitioner (murmur2), so a
key lands in the same partition number on NATS and on Kafka.
"""

from __future__ import annotations

import re

from catgad.errors import (
    BadName,
)

_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_TOKEN = re.compile(r"(?:[A-Za-z0-9-]|_[0-9A-F]{2})+|_")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
KAFKA_MAX_TOPIC = 249  # the broker refuses longer topic names
EVENTS_TOPIC = "events"  # where the relay publishes stored events (bus.options.relay.topic)
COMMANDS_TOPIC = "commands"  # where routed commands travel (bus.options.commands.topic)


def token(text: str) -> str:
    """`text` as one name token of `[A-Za-z0-9_-]`; different texts give different tokens."""
    if not text:
        return "_"
    raw = text.encode()
    if all(b in _KEEP for b in raw):
        return text  # the common case (stream ids, group names) stays readable and cheap
    return "".join(chr(b) if b in _KEEP else f"_{b:02X}" for b in raw)


def untoken(tok: str) -> str:
    """The text `token()` made `tok` from."""
    if not _TOKEN.fullmatch(tok):
        raise BadName(f"{tok!r} is not a token made by token()")
    if tok == "_":
        return ""
    out = bytearray()
    i = 0
    while i < len(tok):
        if tok[i] == "_":
            out.append(int(tok[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(tok[i]))
            i += 1
    return out.decode()


def check_prefix(prefix: str) -> str:
    """A namespace prefix: dot-separated tokens of `[A-Za-z0-9_-]`, e.g. `catgad` or `prod.shop`."""
    if not _PREFIX.fullmatch(prefix):
        raise BadName(
            f"bus prefix {prefix!r} must be dot-separated words of letters, digits, '_' and '-'"
        )
    return prefix


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils.murmur2), as a signed int32."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_of(key: str, partitions: int) -> int:
    """The partition of `key`, as Kafka's default partitioner picks it for a keyed record."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# -- NATS ----------------------------------------------------------------------


def nats_subject(prefix: str, topic: str, partition: int, key: str) -> str:
    """`<prefix>.<topic>.<partition>.<key>`: one subject per key, grouped by partition."""
    return f"{prefix}.{token(topic)}.{partition}.{token(key)}"


def nats_partition_filter(prefix: str, topic: str, partition: int) -> str:
    """Every subject of one partition of a topic."""
    return f"{prefix}.{token(topic)}.{partition}.>"


def nats_topic_filter(prefix: str, topic: str) -> str:
    return f"{prefix}.{token(topic)}.>"


def nats_stream(prefix: str, topic: str) -> str:
    """The JetStream stream that holds one topic (stream names cannot hold dots).

    No token holds "__" (a "_" is always followed by two hex digits), so the
    separator keeps every (prefix, topic) pair apart.
    """
    return f"{token(prefix)}__{token(topic)}"


def nats_overlap(subject_prefix: str, prefix: str, topics: list[str]) -> str | None:
    """The first of `topics` whose NATS bus subjects (bus prefix `prefix`) share a subject
    with the NATS store's `<subject_prefix>.>`, or None. JetStream refuses two streams
    with overlapping subjects on one server, so such a pair cannot work there."""
    for topic in topics:
        space = f"{prefix}.{token(topic)}"
        if (
            subject_prefix == space
            or subject_prefix.startswith(space + ".")
            or space.startswith(subject_prefix + ".")
        ):
            return topic
    return None


def nats_consumer(group: str, partition: int) -> str:
    """The durable consumer of one group for one partition; the last `-p<n>` is the partition."""
    return f"{token(group)}-p{partition}"


# -- Kafka ---------------------------------------------------------------------


def kafka_topic(prefix: str, topic: str) -> str:
    name = f"{prefix}.{token(topic)}"
    if len(name) > KAFKA_MAX_TOPIC:
        raise BadName(f"Kafka topic name for {topic!r} is longer than {KAFKA_MAX_TOPIC} characters")
    return name


def kafka_group(prefix: str, group: str) -> str:
    """Group ids may hold any text; the prefix keeps two deployments' groups apart."""
    return f"{prefix}.{group}"
