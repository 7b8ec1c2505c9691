"""The ids a log line is about, kept in context variables that the log processor reads:
the HTTP request id, and the command being handled (its id, stream, correlation id and
trace id). Setting one costs a ContextVar.set on the command path; nothing is formatted
unless a line is written."""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

from catgad.envelope import Envelope

REQUEST_ID: ContextVar[str | None] = ContextVar("catgad_request_id", default=None)
COMMAND: ContextVar[Envelope | None] = ContextVar("catgad_command", default=None)


def add_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: request_id, command_id, stream, correlation_id and trace_id
    of the work this line was written in, unless the line names them itself."""
    rid = REQUEST_ID.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    command = COMMAND.get()
    if command is not None:
        event.setdefault("command_id", command.id)
        if command.subject:
            event.setdefault("stream", command.subject)
        event.setdefault("correlation_id", command.correlationid or command.id)
        traceparent = command.extensions.get("traceparent")
        if isinstance(traceparent, str) and len(traceparent) >= 35:
            event.setdefault("trace_id", traceparent[3:35])  # 00-<trace id>-<span>-<flags>
    return event
