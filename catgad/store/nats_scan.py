"""Reading one subject of a JetStream stream, or all of it, in sequence order.

A walk from a known position reads the first message by direct get: one
request and no state on the server, so the usual short tail (a poller finding
nothing new, a command's message right after its claim) costs little. Beyond
that, or from the start, it creates an ephemeral consumer (no acks, memory
storage, reaped by the server 30 s after its last use) and pulls batches with
`no_wait`, so a long read is a few round trips.
Works the same on NATS 2.9 and later (2.9 ends a short pull with status 408,
later servers with 404). The whole stream is read without a filter: 2.9
delivers a wildcard-filtered consumer's messages milliseconds apart (it looks
at every subject for each), a literal filter or none at full speed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import nats.errors
import orjson

from catgad.errors import Unavailable
from catgad.store.nats_wire import DEPENDENCY, ApiError, Got, Wire, status_of

_DIRECT_STEPS = 1  # messages read by direct get before a walk switches to a consumer


async def walk(
    wire: Wire, stream: str, subject: str, start: int, batch: int
) -> AsyncGenerator[Got, None]:
    """Messages on `subject` ("": every message) from sequence `start` on, in order.

    See the module docstring. Use with contextlib.aclosing.
    """
    seq = max(start, 1)
    # From the very start, a consumer at once: 2.9 finds a subject's first message by
    # looking at every message before it, a consumer by its subject index.
    for _ in range(_DIRECT_STEPS if seq > 1 else 0):
        got = await wire.direct_get(stream, seq=seq, subject=subject)
        if got is None:
            return
        yield got
        seq = got.seq + 1
    async with contextlib.aclosing(scan(wire, stream, subject, seq, batch)) as rest:
        async for got in rest:
            yield got


async def scan(
    wire: Wire, stream: str, subject: str, start: int, batch: int
) -> AsyncGenerator[Got, None]:
    """Messages on `subject` ("": every message) from `start` on, by an ephemeral consumer.

    Use with contextlib.aclosing: closing removes the consumer.
    """
    nc = wire.client()
    inbox = nc.new_inbox()
    try:
        sub = await nc.subscribe(inbox)
    except nats.errors.Error as exc:
        raise Unavailable(DEPENDENCY, f"cannot subscribe: {exc!r}") from exc
    name = ""
    try:
        config: dict[str, object] = {
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": max(start, 1),
            "ack_policy": "none",
            "replay_policy": "instant",
            "inactive_threshold": 30_000_000_000,  # reaped by the server if we vanish
            "mem_storage": True,
        }
        if subject:
            config["filter_subject"] = subject
        try:
            info = await wire.api(
                f"$JS.API.CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": config}
            )
        except ApiError as exc:
            raise exc.mapped() from exc
        name = str(info["name"])
        remaining = int(info.get("num_pending", 0))
        while remaining > 0:
            want = min(remaining, max(batch, 1))
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
                orjson.dumps({"batch": want, "no_wait": True}),
                reply=inbox,
            )
            received = 0
            while received < want:
                msg = await sub.next_msg(timeout=wire.timeout)
                status = status_of(msg)
                if status == "100":  # heartbeat
                    continue
                if status:  # 404 / 408: nothing more for this pull
                    break
                received += 1
                seq, remaining = _ack_metadata(msg.reply)
                yield Got(seq, msg.subject, msg.data, msg.headers or {})
            if received == 0:
                break
    except (OSError, nats.errors.Error) as exc:
        raise Unavailable(DEPENDENCY, f"reading {stream} failed: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name and nc.is_connected:
            # fire and forget: the inactive threshold reaps it anyway
            with contextlib.suppress(Exception):
                await nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{name}", b"")


def _ack_metadata(reply: str) -> tuple[int, int]:
    """(stream sequence, messages pending) from a JetStream delivery's reply subject."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[8])
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...
    return int(tokens[7]), int(tokens[10])
