"""What every bus backend shares on the wire: header names, decoding, deadlines, pending replies.

A command sent with `request` carries three headers beside its envelope:
where to send the reply, a correlation id fresh for each call (so a client
retrying one command id twice at once still gets two answers), and the
deadline after which the requester has stopped waiting. A server skips a
command whose deadline has passed: nobody waits for its reply, and the
client that saw a timeout may already have retried it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog

from catgad.envelope import Envelope, EnvelopeError, from_json, new_id
from catgad.errors import BadBusReply

log = structlog.get_logger(__name__)

REPLY_TO = "catgad-reply-to"
CORRELATION = "catgad-correlation-id"
DEADLINE = "catgad-deadline-ms"  # unix time in milliseconds
_SHOWN = 512  # bytes of an undecodable message put in the log


def decode(raw: bytes) -> Envelope | str:
    """The envelope in `raw`, or why there is none."""
    try:
        return from_json(raw)
    except EnvelopeError as exc:
        return str(exc)
    except (UnicodeDecodeError, ValueError) as exc:  # orjson refuses invalid UTF-8 this way
        return f"not JSON: {exc}"


async def log_undecodable(raw: bytes, reason: str) -> None:
    """The default for subscriptions given no `on_undecodable`: never drop a message unseen."""
    log.error(
        "bus message is not a CloudEvent; acknowledged",
        reason=reason,
        size=len(raw),
        raw_b64=base64.b64encode(raw[:_SHOWN]).decode(),
    )


def request_headers(reply_to: str, correlation: str, timeout: float) -> dict[str, str]:
    deadline_ms = int((time.time() + timeout) * 1000)
    return {REPLY_TO: reply_to, CORRELATION: correlation, DEADLINE: str(deadline_ms)}


def expired(headers: Mapping[str, str]) -> bool:
    """Whether the requester of this command has stopped waiting (False for plain messages)."""
    deadline = headers.get(DEADLINE)
    if deadline is None:
        return False
    try:
        return time.time() * 1000 > int(deadline)
    except ValueError:
        return False


class PendingReplies:
    """Futures of requests in flight, by correlation id; replies for no one are dropped."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[bytes]] = {}

    def expect(self) -> tuple[str, asyncio.Future[bytes]]:
        correlation = new_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        return correlation, future

    def forget(self, correlation: str) -> None:
        self._waiting.pop(correlation, None)

    def resolve(self, correlation: str | None, raw: bytes) -> None:
        future = self._waiting.pop(correlation or "", None)
        if future is not None and not future.done():
            future.set_result(raw)

    def fail_all(self, exc: BaseException) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)
                # the request may be failing already for the same cause and never await it
                future.exception()


Dispatch = Callable[[Envelope, Mapping[str, str]], Awaitable[None]]
SendReply = Callable[[Mapping[str, str], Envelope], Awaitable[None]]


def handler_dispatch(handler: Callable[[Envelope], Awaitable[None]]) -> Dispatch:
    """A subscriber's dispatch: the handler sees the envelope, not the transport's headers."""

    async def dispatch(envelope: Envelope, headers: Mapping[str, str]) -> None:
        await handler(envelope)

    return dispatch


def responder_dispatch(
    topic: str, responder: Callable[[Envelope], Awaitable[Envelope]], send_reply: SendReply
) -> Dispatch:
    """A server's dispatch, the same on every bus: skip a command whose caller has given up,
    run the responder, and hand its reply to the bus's own way of sending one."""

    async def dispatch(envelope: Envelope, headers: Mapping[str, str]) -> None:
        if expired(headers):
            log.warning("command expired before it was served", id=envelope.id, topic=topic)
            return
        await send_reply(headers, await responder(envelope))

    return dispatch


def reply_envelope(raw: bytes) -> Envelope:
    found = decode(raw)
    if isinstance(found, str):
        raise BadBusReply(f"the reply is not a CloudEvent: {found}")
    return found
