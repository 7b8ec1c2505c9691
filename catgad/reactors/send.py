"""Sending a command from a reactor: a whole envelope, with the id, correlation and causation
the reactor decided, through the runtime's router (here, or on the stream's replica)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from catgad.engine.commands import CommandResult
from catgad.envelope import Envelope
from catgad.observability import tracing


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A command a reactor sends. `id` is derived from the reactor's instance and step, so the
    same decision re-sent after a crash is the same command (the store keeps it once)."""

    type: str
    data: dict[str, Any]
    id: str
    correlationid: str
    causationid: str | None = None
    expected_version: int | None = None
    extensions: dict[str, Any] = field(default_factory=dict)


class CommandSender(Protocol):
    async def send(self, command: Outgoing) -> CommandResult: ...


class Router(Protocol):
    async def send(
        self, envelope: Envelope, *, expected_version: int | None = None
    ) -> CommandResult: ...


class RouterSender:
    """The CommandSender of a running service: commands go through its CommandRouter."""

    def __init__(self, router: Router, source: str) -> None:
        self._router = router
        self._source = source

    async def send(self, command: Outgoing) -> CommandResult:
        envelope = Envelope(
            type=command.type,
            data=dict(command.data),
            id=command.id,
            source=self._source,
            correlationid=command.correlationid,
            causationid=command.causationid,
            extensions=tracing.inject(dict(command.extensions)),
        )
        return await self._router.send(envelope, expected_version=command.expected_version)
