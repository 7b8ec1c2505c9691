"""Pure: a process instance folded from its decisions, and the decisions an event, the time or
a person's approval leads to.

    state = fold(process, instance_id, decisions)          # the stream Process-<name>-<id>
    made = begin(process, instance_id, event, now)         # a start event
    made = on_event(process, state, event, now)            # [] when it does not apply
    made = on_time(process, state, now)                    # a due timer fires
    made = on_approval(process, state, True, "ops", "ok", now)

Each function returns the decisions (events of the instance's stream) in the
order they are to be appended, all together: the transition, the timer it
cancels, and what entering the new state does (the commands it sends, with ids
fixed by the instance and the entry; the timer it schedules; the approval it
asks for; its end). The runner appends them at the version it read, so a timer
and an event arriving together cannot both move the instance: whichever the
stream takes first wins, and the other is decided again on the new state.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from catgad.config.cel import CelEvalError, CelExpr
from catgad.consumer.clock import rfc3339
from catgad.envelope import Envelope
from catgad.processes.model import DECISION_PREFIX, ProcessDef
from catgad.reactors.decisions import Decide, command_id

Status = Literal["running", "finished"]

STARTED = DECISION_PREFIX + "Started"
TRANSITIONED = DECISION_PREFIX + "Transitioned"
COMMANDS_SENT = DECISION_PREFIX + "CommandsSent"
TIMER_SCHEDULED = DECISION_PREFIX + "TimerScheduled"
TIMER_FIRED = DECISION_PREFIX + "TimerFired"
TIMER_CANCELLED = DECISION_PREFIX + "TimerCancelled"
APPROVAL_REQUESTED = DECISION_PREFIX + "ApprovalRequested"
DECIDED = DECISION_PREFIX + "Decided"
FINISHED = DECISION_PREFIX + "Finished"
DELIVERED = DECISION_PREFIX + "CommandsDelivered"


class ProcessRuleError(Exception):
    """A process's CEL failed at run time (an `if`, a `set`, a command's data, the id)."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


class NotWaiting(Exception):
    """An approval for an instance that waits for none (decided, timed out, finished)."""


@dataclass(slots=True)
class ProcessState:
    process: str
    id: str
    stream: str
    version: int = 0
    status: Status | None = None  # None: not started
    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    entries: int = 0  # states entered so far (the initial one included)
    timer: dict[str, Any] | None = None  # {state, due, goto} while one is pending
    approval: dict[str, Any] | None = None  # {state, scope, at} while one is asked
    sent: list[dict[str, Any]] = field(default_factory=list)  # {command, command_id, data}
    undelivered: list[dict[str, Any]] = field(default_factory=list)  # announced, not yet sent
    upto: int = 0  # events of the log up to here have been decided on for this instance
    history: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    updated_at: float = 0.0

    def view(self) -> dict[str, Any]:
        """What CEL reads as `process`."""
        return {"id": self.id, "state": self.state, "data": self.data}

    def to_dict(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "id": self.id,
            "stream": self.stream,
            "status": self.status,
            "state": self.state,
            "data": self.data,
            "version": self.version,
            "started_at": rfc3339(self.started_at),
            "updated_at": rfc3339(self.updated_at),
            "timer": None
            if self.timer is None
            else {**self.timer, "due": rfc3339(float(self.timer["due"]))},
            "approval": None
            if self.approval is None
            else {**self.approval, "at": rfc3339(float(self.approval["at"]))},
            "history": [entry | {"at": rfc3339(entry["at"])} for entry in self.history],
        }


# -- folding --------------------------------------------------------------------------------------


def fold(process: ProcessDef, instance: str, decisions: list[Envelope]) -> ProcessState:
    state = ProcessState(process.name, instance, process.stream(instance))
    for decision in decisions:
        evolve(state, decision)
    return state


def evolve(state: ProcessState, decision: Envelope) -> ProcessState:
    """Apply one decision in place (and return the state)."""
    kind, data = decision.type, decision.data
    at = float(data.get("at", 0.0))
    state.version = decision.streamversion or state.version + 1
    state.updated_at = at
    cause = data.get("event") or {}
    state.upto = max(state.upto, int(data.get("upto") or 0), int(cause.get("position") or 0))
    entry: dict[str, Any] = {"decision": kind.removeprefix(DECISION_PREFIX), "at": at}
    if kind == STARTED:
        state.status = "running"
        state.state = data["state"]
        state.data = dict(data.get("data") or {})
        state.started_at = at
        state.entries = 1
        entry |= {"state": data["state"], "event": data.get("event")}
    elif kind == TRANSITIONED:
        state.state = data["to"]
        state.data = {**state.data, **(data.get("set") or {})}
        state.entries += 1
        state.approval = None
        entry |= {k: data[k] for k in ("from", "to", "by", "event", "set") if k in data}
    elif kind == COMMANDS_SENT:
        commands = data.get("commands") or []
        state.sent.extend(commands)
        state.undelivered.extend(commands)
        entry |= {"state": data.get("state"), "commands": commands}
    elif kind == DELIVERED:
        done = {c.get("command_id") for c in data.get("commands") or []}
        state.undelivered = [c for c in state.undelivered if c["command_id"] not in done]
        entry |= {"commands": data.get("commands")}
    elif kind == TIMER_SCHEDULED:
        state.timer = {"state": data["state"], "due": data["due"], "goto": data["goto"]}
        entry |= {"state": data["state"], "due": rfc3339(float(data["due"])), "goto": data["goto"]}
    elif kind in (TIMER_FIRED, TIMER_CANCELLED):
        state.timer = None
        entry |= {"state": data.get("state"), "due": rfc3339(float(data.get("due", 0.0)))}
    elif kind == APPROVAL_REQUESTED:
        state.approval = {"state": data["state"], "scope": data["scope"], "at": at}
        entry |= {"state": data["state"], "scope": data["scope"]}
    elif kind == DECIDED:
        state.approval = None
        entry |= {k: data[k] for k in ("outcome", "token", "comment") if k in data}
    elif kind == FINISHED:
        state.status = "finished"
        entry |= {"state": data.get("state")}
    else:  # not a decision of ours: counted in the version all the same
        return state
    state.history.append(entry)
    return state


# -- deciding -------------------------------------------------------------------------------------


class _Draft:
    """Decisions made one after another, each applied to a copy of the state as it is made,
    so the next one sees what the previous did (entering a state reads its new data)."""

    def __init__(self, state: ProcessState, now: float) -> None:
        # evolve replaces the data and appends to the lists, never changes what is in them:
        # fresh lists are copy enough (a deep copy of the history cost more than the rest)
        self.state = dataclasses.replace(
            state,
            sent=list(state.sent),
            undelivered=list(state.undelivered),
            history=list(state.history),
        )
        self.now = now
        self.made: list[Decide] = []

    def add(self, kind: str, data: dict[str, Any]) -> None:
        decision = Decide(kind, data)
        self.made.append(decision)
        evolve(self.state, Envelope(type=kind, data={**data, "at": self.now}, source="", id="-"))


def begin(process: ProcessDef, instance: str, event: Envelope, now: float) -> list[Decide]:
    """A start event: the instance begins in `initial`, its data computed from the event."""
    draft = _Draft(ProcessState(process.name, instance, process.stream(instance)), now)
    activation = {"data": event.data, "event": _event_view(event), "process": {"id": instance}}
    data = _evaluate(process.data, activation, f"processes.{process.name}.data")
    draft.add(STARTED, {"state": process.initial, "data": data, "event": _cause(event)})
    _enter(process, draft, event)
    return draft.made


def instance_of(process: ProcessDef, event: Envelope) -> str | None:
    """The instance an event is for (`id`), or None when it cannot say (not this process's)."""
    if process.id is None:
        return None
    try:
        value = process.id.evaluate({"data": event.data, "event": _event_view(event)})
    except CelEvalError:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def on_event(process: ProcessDef, state: ProcessState, event: Envelope, now: float) -> list[Decide]:
    """The first transition of the current state that the event takes; [] when none does (the
    instance is finished, or no `on` of its state matches): ignored."""
    if state.status != "running" or state.state is None:
        return []
    current = process.states[state.state]
    activation = {"process": state.view(), "data": event.data, "event": _event_view(event)}
    for transition in current.on:
        if transition.event != event.type:
            continue
        where = f"processes.{process.name}.states.{state.state}.on[{transition.index}]"
        if transition.when is not None:
            try:
                if transition.when.evaluate(activation) is not True:
                    continue
            except CelEvalError as exc:
                raise ProcessRuleError(f"{where}.if", str(exc)) from None
        changed = _evaluate(transition.set, activation, f"{where}.set")
        draft = _Draft(state, now)
        _leave(draft)
        draft.add(
            TRANSITIONED,
            {
                "from": state.state,
                "to": transition.goto,
                "by": "event",
                "event": _cause(event),
                "set": changed,
            },
        )
        _enter(process, draft, event)
        return draft.made
    return []


def due(state: ProcessState) -> float | None:
    """When the pending timer falls due, if one is pending."""
    if state.status != "running" or state.timer is None:
        return None
    return float(state.timer["due"])


def on_time(process: ProcessDef, state: ProcessState, now: float, upto: int = 0) -> list[Decide]:
    """The pending timer fires, once it is due: never early. `upto`: the log position up to
    which events were decided on when it fired (so none of them is decided again)."""
    when = due(state)
    if when is None or now < when:
        return []
    assert state.timer is not None
    draft = _Draft(state, now)
    target = state.timer["goto"]
    draft.add(TIMER_FIRED, {"state": state.state, "due": when, "upto": upto})
    draft.add(TRANSITIONED, {"from": state.state, "to": target, "by": "timer"})
    _enter(process, draft, None)
    return draft.made


def on_approval(
    process: ProcessDef,
    state: ProcessState,
    approve: bool,
    token: str,
    comment: str | None,
    now: float,
    upto: int = 0,
) -> list[Decide]:
    """A person's decision on the approval the instance waits for; NotWaiting if it waits for
    none (decided already, timed out, finished)."""
    if state.status != "running" or state.approval is None or state.state is None:
        raise NotWaiting(f"instance {state.id!r} waits for no decision (state {state.state})")
    approval = process.states[state.state].approval
    assert approval is not None
    target = approval.approve if approve else approval.reject
    draft = _Draft(state, now)
    outcome = "approve" if approve else "reject"
    draft.add(DECIDED, {"outcome": outcome, "token": token, "comment": comment, "upto": upto})
    _leave(draft)
    draft.add(TRANSITIONED, {"from": state.state, "to": target, "by": outcome})
    _enter(process, draft, None)
    return draft.made


def _leave(draft: _Draft) -> None:
    timer = draft.state.timer
    if timer is not None:
        draft.add(TIMER_CANCELLED, {"state": timer["state"], "due": timer["due"]})


def _enter(process: ProcessDef, draft: _Draft, event: Envelope | None) -> None:
    """What entering the draft's (new) state does: commands, a timer, an approval, the end."""
    state = draft.state
    assert state.state is not None
    target = process.states[state.state]
    where = f"processes.{process.name}.states.{state.state}"
    activation = {
        "process": state.view(),
        "data": event.data if event is not None else {},
        "event": _event_view(event) if event is not None else {},
    }
    if target.send:
        commands = []
        for index, send in enumerate(target.send):
            data = _evaluate(send.data, activation, f"{where}.send[{index}].data")
            cid = command_id(state.stream, "enter", state.entries, index)
            cause = event.id if event is not None else None  # else: a timer, an approval
            commands.append(
                {"command": send.command, "command_id": cid, "data": data, "cause": cause}
            )
        draft.add(COMMANDS_SENT, {"state": state.state, "commands": commands})
    if target.after is not None:
        draft.add(
            TIMER_SCHEDULED,
            {
                "state": state.state,
                "due": draft.now + target.after.seconds,
                "goto": target.after.goto,
            },
        )
    if target.approval is not None:
        draft.add(APPROVAL_REQUESTED, {"state": state.state, "scope": target.approval.scope})
    if target.final:
        draft.add(FINISHED, {"state": state.state})


def _evaluate(exprs: dict[str, CelExpr], activation: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, expr in exprs.items():
        try:
            out[name] = copy.deepcopy(expr.evaluate(activation))
        except CelEvalError as exc:
            raise ProcessRuleError(f"{where}.{name}", str(exc)) from None
    return out


def _cause(event: Envelope) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "subject": event.subject,
        "position": event.position,
    }


def _event_view(event: Envelope) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": event.time,
        "correlationid": event.correlationid,
        "causationid": event.causationid,
    }
