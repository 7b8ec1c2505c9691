"""Scenario tests as configured (`tests:`): given events, when a command, then events, a
rejection, a state or read-model rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catgad.config.section import Where


@dataclass(slots=True)
class GivenEvent:
    type: str
    data: dict[str, Any]
    version: int | None = None  # the schema version a `given` event was stored at
    stream: str | None = None  # a `given` event's stream; None: the scenario's default


@dataclass(slots=True)
class ExpectedRejection:
    """`then: {rejected: {status: 422, message: "..."}}`; message matches as a substring."""

    status: int | None = None
    message: str | None = None


@dataclass(slots=True)
class ExpectedRow:
    """`then: {rows: [...]}`: a projection's row for `key` after the scenario's events: with
    exactly `fields` (`exact`, from `row:`), with at least `fields` (`fields:`), or none
    (`absent`)."""

    projection: str
    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    exact: bool = False
    absent: bool = False
    where: Where | None = None


@dataclass(slots=True)
class Scenario:
    """given events → when command → then events, or a rejection; and/or read-model rows.

    Without a command (`command` None) the given events are stored as they are and only
    `expect_rows` is checked."""

    name: str
    given: list[GivenEvent]
    command: str | None
    data: dict[str, Any]
    expect_events: list[GivenEvent] | None = None
    expect_rejection: ExpectedRejection | None = None
    expect_state: dict[str, Any] | None = None  # optional: fields of the state afterwards
    where: Where | None = None
    reply: dict[str, Any] | None = None  # a stubbed handler reply: {events: [...]} or {error}
    expect_rows: list[ExpectedRow] | None = None
