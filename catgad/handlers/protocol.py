"""The handler seam: what user code is asked, what it may answer, and how answers are checked.

A command handler gets the command (a CloudEvent), the aggregate's state and
its version, and answers the events to append, zero or more, or rejects the
command for a business reason. Webhooks and plugins differ only in transport;
both hand their raw answer to ReplyCheck, so a reply is judged the same way
whoever sent it: every event must be of a declared type and match its schema,
or nothing is appended and the caller gets a 502 naming the handler and why.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from catgad.aggregates.model import EventDef
from catgad.aggregates.rules import Decision
from catgad.config.loader import did_you_mean
from catgad.envelope import Envelope
from catgad.errors import BadReply, CircuitOpen, CommandRejected

_EVENT_KEYS = frozenset({"type", "data"})


@dataclass(frozen=True, slots=True)
class HandlerRequest:
    """What a command handler is asked: decide on `command` given `state` at `version`."""

    command: Envelope
    state: dict[str, Any]
    version: int

    def body(self) -> dict[str, Any]:
        """The webhook request body (SPEC section 5)."""
        return {"command": self.command.to_dict(), "state": self.state, "version": self.version}


@dataclass(frozen=True, slots=True)
class HandlerReply:
    """The events a handler decided on, already checked against their schemas.

    `checked` says a ReplyCheck did that checking, so the engine does not again."""

    events: list[Decision]
    checked: bool = False


class Handler(Protocol):
    """User code answering commands. Raises CommandRejected (409), BadReply (502) or
    HandlerUnavailable (503); never anything else."""

    name: str
    kind: str

    async def __call__(self, request: HandlerRequest) -> HandlerReply: ...

    async def close(self) -> None: ...


Outcome = Literal["ok", "rejected", "failed", "malformed", "circuit_open"]


class Stats(Protocol):
    """Where a handler reports its calls (catgad.observability.metrics.HandlerStats)."""

    def done(self, outcome: Outcome, seconds: float) -> None: ...

    def retried(self) -> None: ...

    def watch_circuit(self, state: Callable[[], str]) -> None: ...


async def observed(stats: Stats, call: Awaitable[HandlerReply]) -> HandlerReply:
    """Await a handler's call and report its outcome and how long the caller waited
    (retries and backoff included). A cancelled call reports nothing: it has no outcome."""
    started = time.perf_counter()
    try:
        reply = await call
    except Exception as exc:
        stats.done(outcome_of(exc), time.perf_counter() - started)
        raise
    stats.done("ok", time.perf_counter() - started)
    return reply


def outcome_of(exc: Exception) -> Outcome:
    if isinstance(exc, CommandRejected):
        return "rejected"
    if isinstance(exc, CircuitOpen):
        return "circuit_open"
    if isinstance(exc, BadReply):
        return "malformed"
    return "failed"  # HandlerUnavailable, a plugin that raised, anything unforeseen


def kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


class ReplyCheck:
    """Turns one handler's raw answers into checked events, or a BadReply saying what is wrong."""

    __slots__ = ("_events", "handler")

    def __init__(self, handler: str, events: Mapping[str, EventDef]) -> None:
        self.handler = handler
        self._events = events

    def bad(self, why: str) -> BadReply:
        return BadReply(self.handler, f"handler {self.handler!r}: {why}")

    def reply(self, body: Any) -> HandlerReply:
        """A 2xx webhook reply: `{"events": [...]}`."""
        if not isinstance(body, dict):
            raise self.bad(f'the reply must be an object {{"events": [...]}}, got {kind_of(body)}')
        if "events" not in body:
            if "error" in body:
                raise self.bad("the reply carries an 'error' with a 2xx status; reject with a 4xx")
            raise self.bad("the reply has no 'events' (send {\"events\": []} for none)")
        return self.events(body["events"])

    def rejection(self, status: int, body: Any) -> CommandRejected:
        """A 4xx webhook reply: `{"error": "reason"}` is the business rejection."""
        reason = body.get("error") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            raise self.bad(f'answered {status} without a reason: expected {{"error": "..."}}')
        return CommandRejected(reason, self.handler)

    def events(self, items: Any) -> HandlerReply:
        if not isinstance(items, list | tuple):
            raise self.bad(f"'events' must be a list, got {kind_of(items)}")
        events = [self._event(index, item) for index, item in enumerate(items)]
        return HandlerReply(events, checked=True)

    def _event(self, index: int, item: Any) -> Decision:
        # The usual reply, checked with no message built; anything else takes the slow
        # path below, which says what is wrong.
        if type(item) is dict and item.keys() <= _EVENT_KEYS:
            type_ = item.get("type")
            event_def = self._events.get(type_) if type(type_) is str else None
            data = item.get("data", {})
            if event_def is not None and type(data) is dict and event_def.validator.is_valid(data):
                return Decision(type_, event_def.validator.normalise(data))  # type: ignore[arg-type]
        return self._bad_event(index, item)

    def _bad_event(self, index: int, item: Any) -> Decision:
        where = f"events[{index}]"
        if not isinstance(item, dict):
            raise self.bad(f"{where} must be an object with 'type' and 'data', got {kind_of(item)}")
        type_ = item.get("type")
        if not isinstance(type_, str) or not type_:
            got = "no 'type'" if "type" not in item else f"a 'type' that is {kind_of(type_)}"
            raise self.bad(f"{where} has {got}")
        extra = sorted(set(item) - _EVENT_KEYS)
        if extra:
            raise self.bad(f"{where} ({type_}) has unknown key {extra[0]!r} (expected type, data)")
        event_def = self._events.get(type_)
        if event_def is None:
            hint = did_you_mean(type_, self._events)
            raise self.bad(f"{where}: unknown event type {type_!r}{hint}")
        data = item.get("data", {})
        if not isinstance(data, dict):
            raise self.bad(f"{where} ({type_}): 'data' must be an object, got {kind_of(data)}")
        errors = event_def.validator.errors(data)
        if errors:
            first = errors[0]
            raise self.bad(
                f"{where} ({type_}) breaks its schema at {first.pointer or '/'}: {first.message}"
            )
        return Decision(type_, event_def.validator.normalise(data))
