"""A process (state machine) as the config declares it, compiled (CEL) and resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catgad.config.cel import CelExpr

STREAM_PREFIX = "Process-"
DECISION_PREFIX = "process."


@dataclass(frozen=True, slots=True)
class Transition:
    event: str
    goto: str
    when: CelExpr | None = None  # `if:` in the YAML
    set: dict[str, CelExpr] = field(default_factory=dict)
    index: int = 0


@dataclass(frozen=True, slots=True)
class SendDef:
    command: str
    data: dict[str, CelExpr]


@dataclass(frozen=True, slots=True)
class TimerDef:
    seconds: float
    goto: str


@dataclass(frozen=True, slots=True)
class ApprovalDef:
    scope: str
    approve: str
    reject: str


@dataclass(slots=True)
class StateDef:
    name: str
    on: list[Transition] = field(default_factory=list)
    send: list[SendDef] = field(default_factory=list)
    after: TimerDef | None = None
    approval: ApprovalDef | None = None
    final: bool = False

    def targets(self) -> list[str]:
        """Every state this one can move to."""
        out = [t.goto for t in self.on]
        if self.after is not None:
            out.append(self.after.goto)
        if self.approval is not None:
            out += [self.approval.approve, self.approval.reject]
        return out


@dataclass(slots=True)
class ProcessDef:
    name: str
    start: list[str]  # event types that start an instance
    id: CelExpr | None  # CEL over every event it reads: which instance
    initial: str
    states: dict[str, StateDef]
    data: dict[str, CelExpr] = field(default_factory=dict)  # set at start, over the start event
    description: str | None = None
    where: Any = None
    tests: list[tuple[dict[str, Any], Any]] = field(default_factory=list)  # raw, where

    def stream(self, instance: str) -> str:
        return f"{STREAM_PREFIX}{self.name}-{instance}"

    @property
    def stream_prefix(self) -> str:
        return f"{STREAM_PREFIX}{self.name}-"

    def events(self) -> set[str]:
        """Every event type the process reads."""
        return {*self.start, *(t.event for s in self.states.values() for t in s.on)}
