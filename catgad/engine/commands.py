"""Running a command: validate, load state, decide, append with the version decided on."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from catgad.aggregates.model import AggregateDef, CommandDef
from catgad.aggregates.payload import check_payload
from catgad.aggregates.rules import Decision, decide, evolve
from catgad.engine.state import Loaded, StateLoader
from catgad.envelope import (
    Envelope,
    EnvelopeError,
    from_dict,
    is_cloudevent,
    is_rfc3339,
    new_id,
    now_rfc3339,
)
from catgad.errors import (
    CatgadError,
    CommandRejected,
    ConcurrencyError,
    EventRuleFailed,
    HandlerError,
    IdempotencyKeyReused,
    InvalidPayload,
    NotFound,
    PreconditionFailed,
    RuleError,
    UnknownCommand,
)
from catgad.handlers.protocol import Handler, HandlerRequest
from catgad.ids import event_id
from catgad.model import Config
from catgad.observability import tracing
from catgad.observability.context import COMMAND
from catgad.store.protocol import AppendResult, EventStore

# A check that every event a command decided must pass before it is stored (a projection's
# mapping): called with the command type and the events, it raises EventRuleFailed.
EventCheck = Callable[[str, list[Envelope]], None]

# How often a command without If-Match is re-decided when another writer got there first.
MAX_CONFLICT_RETRIES = 8
# Refusals that depend on the state decided on: checked again on the stored state when that
# was a cached or guessed one.
_STATE_DEPENDENT = (PreconditionFailed, CommandRejected, RuleError, EventRuleFailed)


@dataclass(frozen=True, slots=True)
class CommandResult:
    stream: str
    version: int
    events: list[Envelope]
    command_id: str
    duplicate: bool = False  # a retried command: first result returned, nothing appended

    @property
    def created(self) -> bool:
        """True when this command started the stream (HTTP 201)."""
        return bool(self.events) and self.version == len(self.events) and not self.duplicate

    def to_dict(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "stream": self.stream,
            "version": self.version,
            "duplicate": self.duplicate,
            "events": [e.to_dict() for e in self.events],
        }


class _StreamLocks:
    """Commands of one stream run one at a time in this process, in arrival order.

    A stream in use is a key, its value the commands waiting for it; a command that finds
    the stream free takes it without creating a lock or awaiting anything, and one that
    ends hands the stream straight to the next waiter. (An asyncio.Lock per stream cost
    a lock object, a count of its users and two coroutines around every command.)
    """

    __slots__ = ("_busy",)

    def __init__(self) -> None:
        self._busy: dict[str, deque[asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        """Streams in use."""
        return len(self._busy)

    def try_take(self, stream: str) -> deque[asyncio.Future[None]] | None:
        """Take a free stream (None); else its waiters, for wait() to join."""
        waiters = self._busy.get(stream)
        if waiters is None:
            self._busy[stream] = deque()
        return waiters

    async def wait(self, stream: str, waiters: deque[asyncio.Future[None]]) -> None:
        """Wait for the stream to be handed over; cancelled, the turn goes to the next."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn in waiters:
                waiters.remove(turn)  # cancelled while waiting: never had the stream
            elif not turn.cancelled():
                self.release(stream)  # handed the stream, cancelled before running
            raise

    def release(self, stream: str) -> None:
        waiters = self._busy[stream]
        while waiters:
            turn = waiters.popleft()
            if not turn.done():  # a cancelled waiter's turn is done: skipped
                turn.set_result(None)
                return
        del self._busy[stream]


class CommandEngine:
    """Executes commands against a store. Transport-agnostic: HTTP, CLI and bus call this."""

    def __init__(
        self,
        config: Config,
        store: EventStore,
        *,
        on_appended: Callable[[AppendResult], None] | None = None,
        handlers: Mapping[str, Handler] | None = None,
        event_checks: Sequence[EventCheck] = (),
    ) -> None:
        self.config = config
        self._event_checks = list(event_checks)
        self.store = store
        self.handlers: Mapping[str, Handler] = handlers if handlers is not None else {}
        self.states = StateLoader(store, events=config.events)
        self._locks = _StreamLocks()
        self._on_appended = on_appended

    # -- commands ---------------------------------------------------------------------------

    def command_def(self, command_type: str) -> CommandDef:
        cmd = self.config.commands.get(command_type)
        if cmd is None:
            raise UnknownCommand(command_type, sorted(self.config.commands))
        return cmd

    def envelope_for(
        self, command_type: str, body: Any, *, command_id: str | None = None
    ) -> Envelope:
        """The command envelope from a request body: its data, or a whole CloudEvent."""
        self.command_def(command_type)
        if is_cloudevent(body):
            try:
                env = from_dict(body)
            except EnvelopeError as exc:
                raise InvalidPayload(f"invalid CloudEvent: {exc}") from None
            stamp = body.get("time")
            if stamp is not None and not is_rfc3339(stamp):
                raise InvalidPayload(
                    f"invalid CloudEvent: attribute 'time' must be an RFC 3339 date-time, "
                    f"such as 2026-01-02T03:04:05Z; got {stamp!r}"
                )
            if env.type != command_type:
                raise InvalidPayload(
                    f"CloudEvent type {env.type!r} does not match command {command_type!r}"
                )
            if command_id:
                env.id = command_id
            return env
        if not isinstance(body, dict):
            raise InvalidPayload(f"{command_type}: the body must be a JSON object")
        return Envelope(
            type=command_type,
            data=body,
            id=command_id or new_id(),
            source=self.config.service.name,
        )

    async def execute(
        self,
        command_type: str,
        body: Any,
        *,
        command_id: str | None = None,
        expected_version: int | None = None,
    ) -> CommandResult:
        client_id = command_id or (body.get("id") if is_cloudevent(body) else None)
        envelope = self.envelope_for(command_type, body, command_id=command_id)
        return await self.handle(
            envelope, expected_version=expected_version, client_chose_id=client_id is not None
        )

    async def handle(
        self,
        envelope: Envelope,
        *,
        expected_version: int | None = None,
        client_chose_id: bool = True,
    ) -> CommandResult:
        cmd, aggregate, stream = self.prepare(envelope)
        ids = COMMAND.set(envelope)  # the command's ids on its log lines
        with tracing.command_span(envelope):
            locks = self._locks
            waiters = locks.try_take(stream)
            if waiters is not None:
                await locks.wait(stream, waiters)
            try:
                return await self._run_locked(
                    cmd, aggregate, stream, envelope, expected_version, client_chose_id
                )
            finally:
                locks.release(stream)
                COMMAND.reset(ids)

    def prepare(self, envelope: Envelope) -> tuple[CommandDef, AggregateDef, str]:
        """Check a command's type and payload; its definition, aggregate and stream (the subject).

        What a router needs before it can send the command to the stream's replica.
        """
        cmd = self.command_def(envelope.type)
        envelope.data = check_payload(cmd.name, cmd.validator, envelope.data)
        aggregate = self.config.aggregates[cmd.aggregate]
        stream = aggregate.stream_id(str(envelope.data[aggregate.id_field]))
        envelope.subject = stream
        return cmd, aggregate, stream

    async def _run_locked(
        self,
        cmd: CommandDef,
        aggregate: AggregateDef,
        stream: str,
        envelope: Envelope,
        expected_version: int | None,
        client_chose_id: bool,
    ) -> CommandResult:
        if cmd.handler is not None and client_chose_id:
            # A retry of a handled command gets its first result without asking the
            # handler again: user code is not re-run, and a handler that is down
            # meanwhile does not turn a done command into a 503.
            first = await self.store.find_command(envelope.id)
            if first is not None:
                if first.stream != stream:
                    raise IdempotencyKeyReused(envelope.id, f"stream {first.stream!r}")
                return _result(first, duplicate=True)
        fresh = False
        # An uncached stream is guessed new (StateLoader): a wrong guess is caught by the
        # append's version check or re-decided on the stored state after a rejection. Not
        # for a handler, which would be asked about a state that may not be the stream's.
        guess = cmd.handler is None
        for _attempt in range(MAX_CONFLICT_RETRIES):
            loaded = await self.states.load(aggregate, stream, fresh=fresh, guess=guess)
            if expected_version is not None and loaded.version != expected_version and not fresh:
                loaded = await self.states.load(aggregate, stream, fresh=True)
            try:
                if expected_version is not None and loaded.version != expected_version:
                    raise ConcurrencyError(stream, expected_version, loaded.version)
                if cmd.handler is not None:
                    # the handler's reply, checked against the event schemas by it (awaited
                    # here rather than in a method of its own: every resume of a waiting
                    # command runs down the whole chain of coroutines awaiting)
                    handler = self.handlers.get(cmd.handler)
                    if handler is None:
                        raise HandlerError(
                            cmd.handler, f"handler {cmd.handler!r} is not available in this process"
                        )
                    with tracing.span("handler", **{"catgad.handler": cmd.handler}):
                        reply = await handler(
                            HandlerRequest(envelope, loaded.state, loaded.version)
                        )
                    decisions, checked = reply.events, reply.checked
                else:
                    decisions = decide(cmd, loaded.state, loaded.version, envelope)
                    checked = False
                events = self._envelopes(cmd, stream, envelope, decisions, checked)
                after = self._applied(cmd, aggregate, loaded, events)
            except CatgadError as exc:
                if not fresh and isinstance(exc, _STATE_DEPENDENT):
                    # The state may be a cached one that another replica has since moved on
                    # from (streams move between replicas), or a guess: a refusal stands only
                    # on the state as stored. Decided again only when the stream did move, so
                    # a handler (a webhook) is not asked twice for every rejection.
                    fresh = True
                    if await self.store.stream_version(stream) != loaded.version:
                        continue
                # A retry of a command that already succeeded must get its first result,
                # even though the state it now meets would reject it.
                if client_chose_id:
                    first = await self.store.find_command(envelope.id)
                    if first is not None:
                        return _result(first, duplicate=True)
                raise
            try:
                with tracing.span("store.append", **{"catgad.stream": stream}):
                    appended = await self.store.append(
                        stream, events, expected_version=loaded.version, command_id=envelope.id
                    )
            except ConcurrencyError:
                self.states.forget(stream)
                if expected_version is not None:
                    raise
                fresh = True
                continue
            if appended.duplicate:
                self.states.forget(stream)
                return _result(appended, duplicate=True)
            await self.states.advance(aggregate, stream, loaded, after)
            if self._on_appended is not None:
                self._on_appended(appended)
            return _result(appended, duplicate=False)
        raise ConcurrencyError(stream, loaded.version, await self.store.stream_version(stream))

    def _applied(
        self, cmd: CommandDef, aggregate: AggregateDef, loaded: Loaded, events: list[Envelope]
    ) -> Loaded:
        """The state the events give, and every other check that must apply them (a
        projection's mapping), before they are stored: a failing rule refuses the command."""
        state = loaded.state
        for event in events:
            try:
                state = evolve(aggregate, state, event)
            except RuleError as exc:
                raise EventRuleFailed(cmd.name, event.type, exc.where, exc.field, exc.why) from None
        for check in self._event_checks:
            check(cmd.name, events)
        return Loaded(state, loaded.version + len(events))

    def _envelopes(
        self,
        cmd: CommandDef,
        stream: str,
        command: Envelope,
        decisions: list[Decision],
        checked: bool,
    ) -> list[Envelope]:
        """The events to append; `checked` when a handler's ReplyCheck has already held the
        decisions to their schemas, so they are not validated twice."""
        now = now_rfc3339()
        out: list[Envelope] = []
        for index, decision in enumerate(decisions):
            event_def = self.config.events.get(decision.type)
            if event_def is not None and not checked:
                errors = event_def.validator.errors(decision.data)
                if errors:
                    first = errors[0]
                    raise RuleError(
                        f"commands.{cmd.name}.emit[{index}]",
                        f"event {decision.type} breaks its schema at "
                        f"{first.pointer or '/'}: {first.message}",
                    )
                event_def.validator.normalise(decision.data)
            out.append(
                Envelope(
                    type=decision.type,
                    data=decision.data,
                    id=event_id(command.id, index),
                    source=self.config.service.name,
                    subject=stream,
                    time=now,
                    correlationid=command.correlationid or command.id,
                    causationid=command.id,
                    dataschemaversion=event_def.version if event_def else 1,
                    extensions={
                        k: v
                        for k, v in command.extensions.items()
                        if k in ("traceparent", "tracestate")
                    },
                )
            )
        return out

    # -- queries ----------------------------------------------------------------------------

    async def aggregate_state(self, aggregate_type: str, instance_id: str) -> tuple[str, Loaded]:
        aggregate = self.config.aggregates.get(aggregate_type)
        if aggregate is None:
            raise NotFound("aggregate type", aggregate_type)
        stream = aggregate.stream_id(instance_id)
        loaded = await self.states.load(aggregate, stream, fresh=True)
        if loaded.version == 0:
            raise NotFound(f"{aggregate_type} aggregate", instance_id)
        return stream, loaded


def _result(appended: AppendResult, *, duplicate: bool) -> CommandResult:
    return CommandResult(
        stream=appended.stream,
        version=appended.version,
        events=list(appended.events),
        command_id=appended.command_id,
        duplicate=duplicate,
    )
