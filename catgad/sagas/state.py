"""Pure: a saga instance's state folded from its decisions, and what it must do next.

    state = fold(saga, instance_id, decisions)         # the stream Saga-<name>-<id>
    action = next_action(saga, state, now, arrived)     # what the runner does (its I/O)

Each decision is an event of the instance's own stream, written before the
command it announces goes out; a runner that crashed in between finds the
decision and sends the same command (same id) again. `next_action` looks only
at the state, the time and an awaited event that arrived, so the runner, a
scenario test and a property test all run the same decisions.

Statuses: running → completed; running → compensating → compensated; a
compensation that keeps failing → failed, until an operator's retry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from catgad.config.cel import CelEvalError, CelExpr
from catgad.consumer.clock import rfc3339
from catgad.envelope import Envelope
from catgad.reactors.decisions import Decide, command_id
from catgad.sagas.model import DECISION_PREFIX, SagaDef

Status = Literal["running", "completed", "compensating", "compensated", "failed"]
FINAL: frozenset[str] = frozenset({"completed", "compensated"})
STATUSES: tuple[str, ...] = ("running", "completed", "compensating", "compensated", "failed")

STARTED = DECISION_PREFIX + "Started"
STEP_SENT = DECISION_PREFIX + "StepSent"
STEP_ACCEPTED = DECISION_PREFIX + "StepAccepted"
STEP_SUCCEEDED = DECISION_PREFIX + "StepSucceeded"
STEP_FAILED = DECISION_PREFIX + "StepFailed"
TIMED_OUT = DECISION_PREFIX + "TimedOut"
CANCELLED = DECISION_PREFIX + "CancelRequested"
COMPENSATION_SENT = DECISION_PREFIX + "CompensationSent"
COMPENSATION_DONE = DECISION_PREFIX + "CompensationDone"
COMPENSATION_FAILED = DECISION_PREFIX + "CompensationFailed"
RETRIED = DECISION_PREFIX + "RetryRequested"
COMPLETED = DECISION_PREFIX + "Completed"
COMPENSATED = DECISION_PREFIX + "Compensated"


@dataclass(slots=True)
class Produced:
    """An event a completed step produced: what compensation walks back over."""

    step: int
    id: str
    type: str
    data: dict[str, Any]
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "id": self.id,
            "type": self.type,
            "data": self.data,
            "subject": self.subject,
        }

    @classmethod
    def of(cls, step: int, raw: dict[str, Any]) -> Produced:
        return cls(step, raw["id"], raw["type"], raw.get("data") or {}, raw.get("subject"))


@dataclass(slots=True)
class SagaState:
    saga: str
    id: str
    stream: str
    version: int = 0
    status: Status | None = None  # None: not started
    input: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    trigger: str | None = None  # the id of the event that started it
    step: int = 0  # index of the step under way (== number of steps: all done)
    sent: dict[str, Any] | None = None  # the current step's StepSent, until its outcome
    accepted: dict[str, Any] | None = None  # its StepAccepted (an awaiting step)
    steps: dict[str, Any] = field(default_factory=dict)  # steps.<name>: its first event's data
    produced: list[Produced] = field(default_factory=list)  # by completed steps, in order
    undo: list[Produced] = field(default_factory=list)  # to compensate, newest first
    undone: int = 0  # compensations confirmed
    undo_sent: dict[str, Any] | None = None  # the compensation under way
    reason: str | None = None  # why it compensates, or why it failed
    cancelling: str | None = None  # a cancel that waits for the step in flight to answer
    cause: str | None = None  # id of the decision that announced the command under way
    log: list[dict[str, Any]] = field(default_factory=list)
    updated_at: float = 0.0

    @property
    def correlation(self) -> str:
        """The correlationid of every command the saga sends, and of what they cause."""
        return self.stream

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def summary(self, saga: SagaDef) -> dict[str, Any]:
        """What GET /sagas/{name}?status= lists."""
        return {
            "id": self.id,
            "status": self.status,
            "step": self.current_step(saga),
            "version": self.version,
            "started_at": rfc3339(self.started_at),
            "updated_at": rfc3339(self.updated_at),
        }

    def current_step(self, saga: SagaDef) -> str | None:
        return saga.steps[self.step].name if self.step < len(saga.steps) else None

    def to_dict(self, saga: SagaDef) -> dict[str, Any]:
        """The whole instance, as GET /sagas/{name}/{id} shows it."""
        return {
            "saga": self.saga,
            "id": self.id,
            "stream": self.stream,
            "status": self.status,
            "step": self.current_step(saga),
            "input": self.input,
            "reason": self.reason,
            "version": self.version,
            "started_at": rfc3339(self.started_at),
            "updated_at": rfc3339(self.updated_at),
            "compensations": {"planned": len(self.undo), "done": self.undone},
            "log": [entry | {"at": rfc3339(entry["at"])} for entry in self.log],
        }


# -- folding the decisions ----------------------------------------------------------------------


def fold(saga: SagaDef, instance: str, decisions: list[Envelope]) -> SagaState:
    state = SagaState(saga.name, instance, saga.stream(instance))
    for decision in decisions:
        evolve(saga, state, decision)
    return state


def evolve(saga: SagaDef, state: SagaState, decision: Envelope) -> SagaState:
    """Apply one decision (in place, and returned); decisions of other types are ignored."""
    kind, data = decision.type, decision.data
    at = float(data.get("at", 0.0))
    state.version = decision.streamversion or state.version + 1
    state.updated_at = at
    entry: dict[str, Any] = {"decision": kind.removeprefix(DECISION_PREFIX), "at": at}
    if kind == STARTED:
        state.status = "running"
        state.input = data.get("input") or {}
        state.started_at = at
        state.trigger = data.get("trigger")
    elif kind == STEP_SENT:
        state.sent = data
        state.cause = decision.id
        entry |= _pick(data, "step", "name", "command", "command_id", "data")
    elif kind == STEP_ACCEPTED:
        state.accepted = data
        entry |= _pick(data, "step", "name", "command_id", "events")
        if state.cancelling is not None:  # its outcome is not waited for: it is cancelled
            state.sent = state.accepted = None
            _start_compensating(saga, state, state.cancelling)
    elif kind == STEP_SUCCEEDED:
        accepted = [
            Produced.of(state.step, raw) for raw in (state.accepted or {}).get("events", [])
        ]
        seen = {p.id for p in accepted}  # an awaited event the command itself produced: once
        events = [Produced.of(state.step, raw) for raw in data.get("events") or []]
        mine = accepted + [p for p in events if p.id not in seen]
        state.produced.extend(mine)
        if mine and state.step < len(saga.steps):
            state.steps[saga.steps[state.step].name] = mine[0].data
        entry |= _pick(data, "step", "name", "events")
        state.step += 1
        state.sent = state.accepted = None
        if state.cancelling is not None:
            _start_compensating(saga, state, state.cancelling)
    elif kind == CANCELLED and state.sent is not None and state.accepted is None:
        # the step's command is out and its answer unknown: what it did must be known
        # (and undone) first, so the cancel takes effect once the step has an outcome
        state.cancelling = str(data.get("reason") or "cancelled")
        entry |= _pick(data, "reason")
    elif kind in (STEP_FAILED, TIMED_OUT, CANCELLED):
        entry |= _pick(data, "step", "name", "reason", "status")
        state.sent = state.accepted = None
        _start_compensating(saga, state, str(data.get("reason") or kind))
    elif kind == COMPENSATION_SENT:
        state.undo_sent = data
        state.cause = decision.id
        entry |= _pick(data, "event_id", "event_type", "command", "command_id", "data")
    elif kind == COMPENSATION_DONE:
        state.undone += 1
        state.undo_sent = None
        entry |= _pick(data, "event_id", "command_id", "events")
    elif kind == COMPENSATION_FAILED:
        state.status = "failed"
        state.reason = str(data.get("reason") or "compensation failed")
        entry |= _pick(data, "event_id", "command_id", "reason", "status")
    elif kind == RETRIED:
        state.status = "compensating"  # the compensation announced is sent again, same id
    elif kind == COMPLETED:
        state.status = "completed"
    elif kind == COMPENSATED:
        state.status = "compensated"
    else:  # not a decision of ours: counted in the version all the same
        return state
    state.log.append(entry)
    return state


def _start_compensating(saga: SagaDef, state: SagaState, reason: str) -> None:
    state.status = "compensating"
    state.cancelling = None
    state.reason = reason
    state.undo = [p for p in reversed(state.produced) if p.type in saga.compensate]
    state.undone = 0
    state.undo_sent = None


def _pick(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: data[name] for name in names if name in data}


# -- what to do next ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send this command; `announce` is the decision written first (None: it was written
    before a crash, and this is the same command sent again)."""

    command: str
    data: dict[str, Any]
    command_id: str
    announce: Decide | None
    compensation: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until `until` (epoch seconds; None: until an event arrives)."""

    until: float | None


Action = Decide | Send | Wait | None


class SagaRuleError(Exception):
    """A saga's CEL failed at run time (a step's data, a compensation's, a match)."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


def next_action(
    saga: SagaDef, state: SagaState, now: float, arrived: Envelope | None = None
) -> Action:
    """The one next thing the instance needs; None when it is finished or failed.

    `arrived` is an event of the current step's `await` that matched the instance
    (the runner matches them as they pass by, see `awaited`)."""
    if state.status == "running":
        return _running(saga, state, now, arrived)
    if state.status == "compensating":
        return _compensating(saga, state, now)
    return None


def _running(saga: SagaDef, state: SagaState, now: float, arrived: Envelope | None) -> Action:
    in_doubt = state.sent is not None and state.accepted is None  # sent, outcome unknown
    if saga.timeout is not None and now >= state.started_at + saga.timeout and not in_doubt:
        name = state.current_step(saga)
        return Decide(
            TIMED_OUT,
            {
                "step": state.step,
                "name": name,
                "reason": f"the saga's timeout ({saga.timeout:g}s) passed",
            },
        )
    deadline = state.started_at + saga.timeout if saga.timeout is not None else None
    if state.step >= len(saga.steps):
        return Decide(COMPLETED, {})
    step = saga.steps[state.step]
    if state.sent is None:
        data = evaluate_map(
            step.data, variables(state), f"sagas.{saga.name}.steps[{step.index}].data"
        )
        cid = command_id(state.stream, "step", step.index)
        announce = Decide(
            STEP_SENT,
            {
                "step": step.index,
                "name": step.name,
                "command": step.command,
                "command_id": cid,
                "data": data,
            },
        )
        return Send(step.command, data, cid, announce)
    if state.accepted is None:  # announced, outcome unknown (a crash came between): again
        sent = state.sent
        return Send(step.command, sent.get("data") or {}, str(sent["command_id"]), None)
    # accepted, awaiting its outcome event
    if arrived is not None:
        outcome = awaited(saga, state, arrived)
        if outcome == "success":
            return Decide(
                STEP_SUCCEEDED,
                {"step": step.index, "name": step.name, "events": [_event_dict(arrived)]},
            )
        if outcome == "failure":
            return Decide(
                STEP_FAILED,
                {
                    "step": step.index,
                    "name": step.name,
                    "reason": f"{arrived.type} arrived",
                    "event": _event_dict(arrived),
                },
            )
    assert step.awaits is not None
    if step.awaits.timeout is not None:
        due = float(state.accepted.get("at", 0.0)) + step.awaits.timeout
        if now >= due:
            return Decide(
                STEP_FAILED,
                {
                    "step": step.index,
                    "name": step.name,
                    "reason": f"no {' or '.join(step.awaits.types)} within "
                    f"{step.awaits.timeout:g}s",
                },
            )
        deadline = due if deadline is None else min(deadline, due)
    return Wait(deadline)


def _compensating(saga: SagaDef, state: SagaState, now: float) -> Action:
    if state.undone >= len(state.undo):
        return Decide(COMPENSATED, {})
    target = state.undo[state.undone]
    comp = saga.compensate[target.type]
    if state.undo_sent is not None:
        sent = state.undo_sent
        return Send(comp.command, sent.get("data") or {}, str(sent["command_id"]), None, True)
    where = f"sagas.{saga.name}.compensate.{target.type}.data"
    activation = variables(state) | {"event": target.to_dict()}
    data = evaluate_map(comp.data, activation, where)
    cid = command_id(state.stream, "undo", target.id)
    announce = Decide(
        COMPENSATION_SENT,
        {
            "event_id": target.id,
            "event_type": target.type,
            "command": comp.command,
            "command_id": cid,
            "data": data,
        },
    )
    return Send(comp.command, data, cid, announce, True)


def answered(saga: SagaDef, state: SagaState, sent: Send, events: list[dict[str, Any]]) -> Decide:
    """The decision recording that `sent` was accepted with `events` (id, type, data, subject):
    a compensation done, a step succeeded, or an awaiting step accepted."""
    if sent.compensation:
        target = state.undo[state.undone]
        return Decide(
            COMPENSATION_DONE,
            {"event_id": target.id, "command_id": sent.command_id, "events": events},
        )
    step = saga.steps[state.step]
    base = {"step": step.index, "name": step.name, "command_id": sent.command_id}
    return Decide(
        STEP_SUCCEEDED if step.awaits is None else STEP_ACCEPTED, base | {"events": events}
    )


def refused(saga: SagaDef, state: SagaState, sent: Send, reason: str, status: int | None) -> Decide:
    """The decision recording that `sent` failed for good (a rejection, or retries spent)."""
    if sent.compensation:
        target = state.undo[state.undone]
        return Decide(
            COMPENSATION_FAILED,
            {
                "event_id": target.id,
                "command_id": sent.command_id,
                "reason": reason,
                "status": status,
            },
        )
    step = saga.steps[state.step]
    return Decide(
        STEP_FAILED,
        {
            "step": step.index,
            "name": step.name,
            "command_id": sent.command_id,
            "reason": reason,
            "status": status,
        },
    )


def awaited(saga: SagaDef, state: SagaState, event: Envelope) -> str | None:
    """'success' or 'failure' when `event` answers the step the instance waits on, else None.

    It answers when its type is the step's, and the step's `match` holds (CEL over the
    saga's variables, `data` and `event`), or by default when it carries the saga's
    correlationid. A step announced but not yet accepted may be answered too: the
    event may come before the command's reply."""
    if state.status != "running" or state.sent is None or state.step >= len(saga.steps):
        return None
    step = saga.steps[state.step]
    if step.awaits is None or event.type not in step.awaits.types:
        return None
    if step.awaits.match is not None:
        activation = variables(state) | {"data": event.data, "event": _event_dict(event)}
        try:
            if step.awaits.match.evaluate(activation) is not True:
                return None
        except CelEvalError:
            return None  # an event this match cannot read is not this saga's
    elif event.correlationid != state.correlation:
        return None
    return "success" if event.type in step.awaits.success else "failure"


def variables(state: SagaState) -> dict[str, Any]:
    """What a saga's CEL reads: `input`, `id` and `steps.<name>`."""
    return {"input": state.input, "id": state.id, "steps": state.steps}


def evaluate_map(
    exprs: dict[str, CelExpr], activation: dict[str, Any], where: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, expr in exprs.items():
        try:
            out[name] = copy.deepcopy(expr.evaluate(activation))
        except CelEvalError as exc:
            raise SagaRuleError(f"{where}.{name}", str(exc)) from None
    return out


def _event_dict(event: Envelope | Produced) -> dict[str, Any]:
    if isinstance(event, Produced):
        return event.to_dict()
    return {
        "id": event.id,
        "type": event.type,
        "data": event.data,
        "subject": event.subject,
        "correlationid": event.correlationid,
        "causationid": event.causationid,
        "streamversion": event.streamversion,
    }
