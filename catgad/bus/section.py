"""The `bus:` section: which bus, where, and each backend's own options.

Every option a bus reads is declared here with its type and bounds, so
`catgad validate` reports an unknown or ill-typed one at its line and
`catgad run` never meets a mistake the validator let through. Kept apart from
the backends so that checking a config imports no broker client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from catgad.bus.topics import COMMANDS_TOPIC, EVENTS_TOPIC, nats_overlap
from catgad.config.fragments import Schema, closed, kinded, or_env, or_env_value, positive, text
from catgad.config.loader import Path
from catgad.config.section import Building, Linting, Section, Where
from catgad.store.nats_codec import DEFAULT_SUBJECT_PREFIX

BusKind = Literal["memory", "nats", "kafka"]
DEFAULT_URLS = {"nats": "nats://127.0.0.1:4222", "kafka": "127.0.0.1:9092"}


@dataclass(slots=True)
class BusConfig:
    kind: BusKind = "memory"
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    where: Where | None = None  # where `bus` is written, for errors found when it opens


def _int(description: str, low: int = 1) -> Schema:
    return or_env_value({"type": "integer", "minimum": low, "description": description})


def _seconds(description: str, low: float = 0) -> Schema:
    bound = {"exclusiveMinimum": 0} if low == 0 else {"minimum": low}
    return or_env_value({"type": "number", **bound, "description": f"seconds: {description}"})


_PREFIX = text(
    "the first token(s) of every subject or topic name: dot-separated words",
    pattern=or_env("^[A-Za-z0-9_-]+(?:\\.[A-Za-z0-9_-]+)*$"),
    patternErrorMessage="dot-separated words of letters, digits, '_' and '-'",
)

# bus.options each kind reads besides `commands` and `relay` (catgad.bus.factory passes
# them to the bus's constructor)
OPTIONS: dict[str, dict[str, Schema]] = {
    "memory": {
        "partitions": _int("partitions of each topic (order is kept per key)"),
        "max_retained": _int("events kept for late subscribers"),
        "redelivery_delay": _seconds("before a failed delivery is tried again", 0.0),
    },
    "nats": {
        "prefix": _PREFIX,
        "partitions": _int("subjects per topic; fixed per deployment (keys would move)"),
        "storage": {"enum": ["file", "memory"], "description": "JetStream storage kind"},
        "replicas": _int("stream replicas"),
        "max_age": _seconds("messages are kept"),
        "duplicate_window": _seconds("JetStream remembers message ids for deduplication"),
        "timeout": _seconds("one request to the server may take"),
        "ack_wait": _seconds(
            "before an unacknowledged message goes to another member (default 2): a dead "
            "daemon's commands move on after this; in-progress acks keep a long one"
        ),
        "redelivery_delay": _seconds("before a failed delivery is tried again", 0.0),
        "pull_expires": _seconds("one pull waits for messages"),
        "stop_timeout": _seconds("a shutdown waits for the messages in hand"),
    },
    "kafka": {
        "prefix": _PREFIX,
        "partitions": _int("used when a topic is created; an existing topic keeps its count"),
        "replication_factor": _int("used when a topic is created"),
        "enable_idempotence": {"type": "boolean", "description": "the idempotent producer"},
        "timeout": _seconds("one request to the broker may take"),
        "redelivery_delay": _seconds("before a failed delivery is tried again", 0.0),
        "session_timeout": _seconds(
            "a silent member stays in its group (default 2): a dead daemon's partitions move "
            "after this; Apache Kafka brokers refuse below group.min.session.timeout.ms (6 s)"
        ),
        "heartbeat_interval": _seconds(
            "between heartbeats to the group coordinator (default 0.5); below session_timeout"
        ),
        "rebalance_timeout": _seconds("members get to rejoin in a rebalance"),
        "max_poll_records": _int("records fetched at once"),
        "fetch_max_wait": _seconds("a fetch waits for records"),
        "metadata_max_age": _seconds("before topic metadata is refreshed"),
        "stop_timeout": _seconds("a shutdown waits for the records in hand"),
        "client_options": {
            "type": "object",
            "description": "passed to aiokafka as they are: security_protocol, sasl_*, ...",
        },
    },
}

COMMANDS = closed(
    "How commands travel when several daemons share a broker (nats, kafka): each is sent "
    "to the topic below, keyed by its stream id, and served by one member of the group at "
    "a time, in order per stream.",
    {
        "topic": text("Topic (subject) the commands are sent to.", default="commands"),
        "group": text(
            "Consumer group of the daemons serving them; default `<service name>-commands`."
        ),
        "timeout": positive(
            "Seconds to wait for a command's reply before answering 503; also the bound on "
            "running one command.",
            30.0,
        ),
        "route": {
            "enum": ["auto", "bus", "local"],
            "default": "auto",
            "description": "auto: over the bus when it is a broker (nats, kafka); bus: always "
            "over the bus; local: run every command in the daemon that received it.",
        },
    },
)

RELAY = closed(
    "The outbox relay: publishes the store's events to the bus, in store order, while "
    "holding the service's relay lease (one daemon at a time).",
    {
        "topic": text("Topic the events are published to.", default="events"),
        "batch": positive("Events published between two checkpoints.", 500, "integer"),
        "lease_ttl": positive("Seconds a relay lease lasts without renewal.", 10.0),
        "poll_interval": positive("Seconds between looks for other daemons' appends.", 0.2),
        "first_backoff": positive("Seconds before the first retry of a failed publish.", 0.05),
        "max_backoff": positive("Longest pause in seconds between publish retries.", 5.0),
        "stop_timeout": positive("Seconds a shutdown waits for the batch in hand.", 10.0),
    },
)

SCHEMA = kinded(
    "Bus",
    "How events are published: memory (in-process, the default), nats or kafka.",
    "memory",
    closed(
        "Bus, long form.",
        {
            "url": text("Server URL (nats) or bootstrap servers (kafka)."),
            "options": {"type": "object", "description": "the bus's settings"},
        },
    ),
    {
        kind: closed(
            f"{kind} bus options: `commands` and `relay` for every kind, the rest its own",
            {"commands": COMMANDS, "relay": RELAY, **known},
        )
        for kind, known in OPTIONS.items()
    },
)


def build_bus(raw: Any, ctx: Building) -> BusConfig:
    spec: dict[str, Any] = {"kind": raw} if isinstance(raw, str) else raw or {}
    kind = spec.get("kind", "memory")
    if kind == "memory":
        ctx.unused(spec, ("url",), "bus", "the nats and kafka buses")
    return BusConfig(
        kind=cast(BusKind, kind),
        url=spec.get("url", DEFAULT_URLS.get(kind)),
        options=dict(spec.get("options") or {}),
        where=ctx.where(("bus",)) if raw is not None else None,
    )


KAFKA_SESSION_TIMEOUT = 2.0  # catgad.bus.kafka's defaults, checked together here
KAFKA_HEARTBEAT_INTERVAL = 0.5


def heartbeat_rule(heartbeat: float, session: float) -> str:
    # a member heartbeating this seldom is dropped from its group between two beats
    return (
        f"heartbeat_interval ({heartbeat:g}s) must be below session_timeout ({session:g}s);"
        " a third of it is usual"
    )


def lint_bus(raw: Any, bus: BusConfig, ctx: Linting) -> None:
    _kafka_heartbeat(bus, ctx)
    _shared_nats(bus, ctx)


def _kafka_heartbeat(bus: BusConfig, ctx: Linting) -> None:
    options = bus.options
    heartbeat = options.get("heartbeat_interval", KAFKA_HEARTBEAT_INTERVAL)
    session = options.get("session_timeout", KAFKA_SESSION_TIMEOUT)
    numbers = all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in (heartbeat, session)
    )
    if bus.kind == "kafka" and numbers and heartbeat >= session:
        key = "heartbeat_interval" if "heartbeat_interval" in options else "session_timeout"
        path: Path = ("bus", "options", key)
        ctx.error(path if key in options else ("bus",), heartbeat_rule(heartbeat, session))


def _shared_nats(bus: BusConfig, ctx: Linting) -> None:
    """A NATS store and a NATS bus on one server must not share subjects."""
    store = ctx.values.get("store")
    if store is None or store.kind != "nats" or bus.kind != "nats" or store.url != bus.url:
        return
    options = bus.options
    topics = [
        _option(options.get("relay"), "topic", EVENTS_TOPIC),
        _option(options.get("commands"), "topic", COMMANDS_TOPIC),
    ]
    subject_prefix = store.options.get("subject_prefix", DEFAULT_SUBJECT_PREFIX)
    prefix = options.get("prefix", "catgad")
    if not isinstance(subject_prefix, str) or not isinstance(prefix, str):
        return  # wrong types are reported by the schema
    clash = nats_overlap(subject_prefix, prefix, topics)
    if clash is not None:
        path: Path = ("store", "options", "subject_prefix")
        ctx.error(
            path if "subject_prefix" in store.options else ("store",),
            f"the nats store's subjects {subject_prefix}.> overlap those of the bus"
            f" topic {clash!r} ({prefix}.{clash}.>) on the same server, which JetStream"
            " refuses: choose another store.options.subject_prefix or bus.options.prefix",
        )


def _option(section: Any, key: str, default: str) -> str:
    """`section[key]` when `section` is a mapping holding a string there, else `default`."""
    value = section.get(key, default) if isinstance(section, dict) else default
    return value if isinstance(value, str) else default


def _default() -> BusConfig:
    return BusConfig()


BUS = Section("bus", SCHEMA, build_bus, _default, lint=lint_bus, named=False)
