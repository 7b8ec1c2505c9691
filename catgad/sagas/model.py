"""A saga as the config declares it, compiled (CEL) and resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catgad.aggregates.payload import PayloadSchema
from catgad.config.cel import CelExpr

STREAM_PREFIX = "Saga-"
# The decision events of an instance's stream (catgad.sagas.state folds them).
DECISION_PREFIX = "saga."


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # per step, for 503s and time-outs (the first try counts)
    backoff: float = 1.0  # seconds before the second attempt, doubling after


@dataclass(frozen=True, slots=True)
class AwaitDef:
    """A step whose outcome arrives later, as an event."""

    success: tuple[str, ...]
    failure: tuple[str, ...] = ()
    match: CelExpr | None = None  # default: the event's correlationid is the saga's
    timeout: float | None = None

    @property
    def types(self) -> tuple[str, ...]:
        return (*self.success, *self.failure)


@dataclass(frozen=True, slots=True)
class StepDef:
    index: int
    name: str
    command: str
    data: dict[str, CelExpr]
    awaits: AwaitDef | None = None
    compensate_none: bool = False  # `compensate: none`: its events need no undoing


@dataclass(frozen=True, slots=True)
class CompensationDef:
    event: str  # the event type it undoes
    command: str
    data: dict[str, CelExpr]


@dataclass(slots=True)
class SagaDef:
    name: str
    steps: list[StepDef]
    compensate: dict[str, CompensationDef] = field(default_factory=dict)
    start_event: str | None = None
    start_id: CelExpr | None = None  # CEL over `data` (the start data): the instance id
    schema: PayloadSchema | None = None  # of the start data, when given
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    description: str | None = None
    where: Any = None  # file:line of the definition
    tests: list[tuple[dict[str, Any], Any]] = field(default_factory=list)  # raw, where

    def stream(self, instance: str) -> str:
        return f"{STREAM_PREFIX}{self.name}-{instance}"

    @property
    def stream_prefix(self) -> str:
        return f"{STREAM_PREFIX}{self.name}-"

    def awaited_types(self) -> set[str]:
        return {t for step in self.steps if step.awaits for t in step.awaits.types}
