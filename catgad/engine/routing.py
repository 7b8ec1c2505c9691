"""Send each command to the one replica that serves its stream, and bring its answer back.

With a broker shared by several daemons (a bus that is DURABLE and has
REQUEST_REPLY: nats, kafka), a daemon does not run the commands it receives:
it checks the payload, works out the stream id, and sends the command with
`bus.request("commands", envelope, key=<stream id>)`. The bus gives each key's
partition to one member of the group `<service>-commands` at a time, in
order, so each stream's commands run one at a time on one replica; when a
replica dies its partitions go to the others. Every daemon `serve`s that
group, running what it is given through `CommandEngine.handle` and replying.
With the in-process bus (or `route: local`) commands run here.

What travels (also written in docs/operations.md, for producers that are not catgad):

- the command: a CloudEvent whose `type` is the command type and `data` its
  payload; `id` is the idempotency key (the HTTP `Idempotency-Key`). The HTTP
  `If-Match` travels as the extension `expectedversion` (an integer).
- the reply, sent to the request's reply-to: a CloudEvent of type
  `catgad.command.result` whose `data` is the HTTP response body of a success,
  or `catgad.command.problem` whose `data` is the RFC 9457 problem; its
  extension `status` is the HTTP status either way, `causationid` the command id.

A routed command answers exactly what a local one would: same status, body
and headers. A reply that does not come within `timeout` is a 503 (the
command may still run; retrying with the same id is safe). Commands are
bounded where they run too (by `timeout` here, 4/5 of it on the serving
replica, whose more precise problem then arrives first), so a backend that
stops answering without an error gives a 503, never a hang.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from catgad.bus.protocol import Bus, Capability, Subscription
from catgad.bus.topics import COMMANDS_TOPIC
from catgad.config.section import Where, config_error
from catgad.engine.commands import CommandEngine, CommandResult
from catgad.engine.deadlines import Deadlines
from catgad.envelope import Envelope, EnvelopeError, from_dict
from catgad.errors import (
    PROBLEM_BASE,
    BadRoutedReply,
    CatgadError,
    InvalidPayload,
    RoutedProblem,
    Unavailable,
)
from catgad.observability import tracing
from catgad.observability.logs import get_logger

log = get_logger("catgad.routing")

RESULT_TYPE = "catgad.command.result"
PROBLEM_TYPE = "catgad.command.problem"
EXPECTED_VERSION = "expectedversion"  # CloudEvents extension: the If-Match of a routed command
STATUS = "status"  # CloudEvents extension of a reply: the HTTP status
_ROUTES = ("auto", "bus", "local")
# Where a command is served it may run for this share of `timeout`, so that its own
# problem (naming the store that hangs) reaches the requester before it stops waiting.
SERVING_SHARE = 0.8
_MAX_KINDS = 256  # distinct routed problem kinds remembered (a bound against odd replies)


@dataclass(frozen=True, slots=True)
class CommandSettings:
    """`bus.options.commands` of the config; every field may be left out."""

    topic: str = COMMANDS_TOPIC
    group: str = ""  # "" means "<service>-commands"
    timeout: float = 30.0  # seconds to wait for a reply; also the bound on running one command
    route: Literal["auto", "bus", "local"] = "auto"  # auto: over the bus when it is a broker

    @classmethod
    def from_options(cls, options: Any, where: Where | None = None) -> CommandSettings:
        """Settings from `bus.options.commands`, with a clear error for a wrong one."""
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            raise config_error(where, "bus.options.commands", f"expected a mapping: {options!r}")
        known = ("topic", "group", "timeout", "route")
        at = "bus.options.commands."
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key not in known:
                raise config_error(where, f"{at}{key}", f"unknown key ({', '.join(known)})")
            if key == "timeout":
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise config_error(where, f"{at}timeout", f"expected > 0, got {value!r}")
                value = float(value)
            elif key == "route" and value not in _ROUTES:
                raise config_error(
                    where, f"{at}route", f"expected one of {', '.join(_ROUTES)}, got {value!r}"
                )
            elif not isinstance(value, str) or not value:
                raise config_error(where, f"{at}{key}", "expected a non-empty string")
            values[key] = value
        return cls(**values)


def routes_over(bus: Bus | None, route: str) -> bool:
    """Whether commands go over `bus`: a broker other daemons share (or `route: bus`)."""
    if bus is None or route == "local":
        return False
    if not bus.capabilities & Capability.REQUEST_REPLY:
        return False
    return route == "bus" or bool(bus.capabilities & Capability.DURABLE)


class CommandRouter:
    """Runs commands here or on the replica serving their stream; serves this replica's share."""

    def __init__(
        self,
        engine: CommandEngine,
        bus: Bus | None,
        *,
        service: str,
        settings: CommandSettings | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.settings = settings or CommandSettings()
        self.group = self.settings.group or f"{service}-commands"
        self.routed = routes_over(bus, self.settings.route)
        self._source = service
        self._serving: Subscription | None = None
        self._deadlines = Deadlines()

    # -- the requesting side -------------------------------------------------------------

    async def execute(
        self,
        command_type: str,
        body: Any,
        *,
        command_id: str | None = None,
        expected_version: int | None = None,
    ) -> CommandResult:
        """The command's result, run wherever its stream is served; errors as a local run's."""
        if not (self.routed and self._serving is not None):
            return await self._bounded(
                self.engine.execute(
                    command_type, body, command_id=command_id, expected_version=expected_version
                )
            )
        envelope = self.engine.envelope_for(command_type, body, command_id=command_id)
        return await self._request(envelope, expected_version)

    async def send(
        self, envelope: Envelope, *, expected_version: int | None = None
    ) -> CommandResult:
        """Run a whole command envelope (its id, correlationid and causationid as given), here
        or on its stream's replica: what reactors send their commands through. The id is
        the caller's choice, so a re-send after a crash finds the first result."""
        if not (self.routed and self._serving is not None):
            return await self._bounded(
                self.engine.handle(envelope, expected_version=expected_version)
            )
        return await self._request(envelope, expected_version)

    async def _request(self, envelope: Envelope, expected_version: int | None) -> CommandResult:
        _, _, stream = self.engine.prepare(envelope)  # a 400 here, before any round trip
        if expected_version is None:
            envelope.extensions.pop(EXPECTED_VERSION, None)
        else:
            envelope.extensions[EXPECTED_VERSION] = expected_version
        tracing.inject(envelope.extensions)  # the serving replica's command span continues ours
        assert self.bus is not None
        reply = await self.bus.request(
            self.settings.topic, envelope, key=stream, timeout=self.settings.timeout
        )
        return result_of(reply)

    # -- the serving side -----------------------------------------------------------------

    async def start(self) -> None:
        """Join the group serving the commands topic (only when commands are routed)."""
        if not self.routed or self._serving is not None:
            return
        assert self.bus is not None
        self._serving = await self.bus.serve(self.settings.topic, self.group, self.respond)
        log.info("serving commands", topic=self.settings.topic, group=self.group)

    async def stop(self) -> None:
        """Finish the command in hand and leave the group; the others take this one's share."""
        serving, self._serving = self._serving, None
        if serving is not None:
            await serving.stop()

    async def respond(self, command: Envelope) -> Envelope:
        """Run one command from the bus; the reply carries its result or its problem."""
        try:
            expected = _expected_version(command)
            result = await self._bounded(
                # the id is fixed whoever chose it: a redelivered command must find its result
                self.engine.handle(command, expected_version=expected, client_chose_id=True),
                self.settings.timeout * SERVING_SHARE,
            )
        except CatgadError as exc:
            return self._reply(PROBLEM_TYPE, exc.problem(), exc.status, command)
        except Exception:
            log.exception("command failed", command=command.type, id=command.id)
            bug = CatgadError(f"internal error running {command.type}; the serving log has it")
            return self._reply(PROBLEM_TYPE, bug.problem(), bug.status, command)
        return self._reply(RESULT_TYPE, result.to_dict(), 201 if result.created else 200, command)

    def _reply(self, kind: str, data: dict[str, Any], status: int, command: Envelope) -> Envelope:
        return Envelope(
            type=kind,
            data=data,
            source=self._source,
            subject=command.subject,
            correlationid=command.correlationid or command.id,
            causationid=command.id,
            extensions={STATUS: status},
        )

    async def _bounded(
        self,
        running: Awaitable[CommandResult],
        limit: float | None = None,
    ) -> CommandResult:
        """Await a command, giving up (503) after `limit`: a backend may hang without error."""
        started = time.monotonic()
        try:
            return await self._deadlines.bounded(running, limit or self.settings.timeout)
        except TimeoutError:
            store = self.engine.store.name
            waited = time.monotonic() - started
            raise Unavailable(f"store ({store})", f"no answer within {waited:.1f}s") from None


def _expected_version(command: Envelope) -> int | None:
    raw = command.extensions.pop(EXPECTED_VERSION, None)
    if raw is None:
        return None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    raise InvalidPayload(f"extension {EXPECTED_VERSION} must be a stream version, not {raw!r}")


# -- replies ------------------------------------------------------------------------------


def result_of(reply: Envelope) -> CommandResult:
    """The CommandResult in a reply, or the problem in it raised as the serving replica's error."""
    if reply.type == PROBLEM_TYPE:
        raise routed_problem(reply.data)
    if reply.type != RESULT_TYPE:
        raise BadRoutedReply(f"a command reply has the unknown type {reply.type!r}")
    data = reply.data
    try:
        return CommandResult(
            stream=str(data["stream"]),
            version=int(data["version"]),
            events=[from_dict(e) for e in data["events"]],
            command_id=str(data["command_id"]),
            duplicate=bool(data.get("duplicate", False)),
        )
    except (KeyError, TypeError, ValueError, EnvelopeError) as exc:
        raise BadRoutedReply(f"a command result could not be read: {exc!r}") from None


_kinds: dict[tuple[int, str, str], type[RoutedProblem]] = {}


def routed_problem(body: dict[str, Any]) -> RoutedProblem:
    """The error a problem body stands for: a RoutedProblem with its status, slug and title.

    The error handler and the metrics read these from the class, so each kind
    of problem gets a subclass of its own (made once, then reused).
    """
    status = body.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        status = 502
    kind = str(body.get("type", ""))
    slug = kind.removeprefix(PROBLEM_BASE) if kind.startswith(PROBLEM_BASE) else "internal"
    title = str(body.get("title", "Error"))
    key = (status, slug, title)
    cls = _kinds.get(key)
    if cls is None:
        attrs = {"status": status, "slug": slug, "title": title, "retryable": status == 503}
        cls = type(f"Routed_{slug}", (RoutedProblem,), attrs)
        if len(_kinds) < _MAX_KINDS:
            _kinds[key] = cls
    return cls(body)
