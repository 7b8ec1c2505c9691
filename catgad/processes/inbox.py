"""What processes put in the operator inbox (catgad.http.inbox): approvals waited for (approve,
reject) and timers overdue (no action: the daemon holding the lease is what to look at)."""

from __future__ import annotations

from typing import Any

from catgad.consumer.clock import rfc3339
from catgad.http.inbox import OVERDUE_AFTER, SHOWN, action, quoted
from catgad.processes.runner import ProcessRunner
from catgad.processes.state import ProcessState


async def inbox_items(runner: ProcessRunner) -> list[dict[str, Any]]:
    now = runner.clock.now()
    items: list[dict[str, Any]] = []
    for name in runner.processes:
        for state in await runner.waiting(name, now - OVERDUE_AFTER, SHOWN):
            items += _items(name, state, now)
    return items


def _items(name: str, state: ProcessState, now: float) -> list[dict[str, Any]]:
    path = f"{quoted(name)}/{quoted(state.id)}"
    subject = {"process": name, "id": state.id, "state": state.state}
    items: list[dict[str, Any]] = []
    if state.approval is not None:
        scope = str(state.approval["scope"])
        items.append(
            {
                "kind": "approval",
                "key": f"approval:{name}:{state.id}",
                "title": f"{name} {state.id} waits for a decision in {state.approval['state']}",
                "detail": f"needs a token with the scope {scope!r}",
                "since": rfc3339(float(state.approval["at"])),
                "subject": {**subject, "data": state.data},
                "link": f"#/processes/{path}",
                "actions": [
                    action(verb, f"/processes/{path}/{verb}", scope, comment=True)
                    for verb in ("approve", "reject")
                ],
            }
        )
    timer = state.timer
    if timer is not None and float(timer["due"]) < now - OVERDUE_AFTER:
        late = now - float(timer["due"])
        items.append(
            {
                "kind": "overdue_timer",
                "key": f"overdue_timer:{name}:{state.id}",
                "title": f"{name} {state.id}: timer of {timer['state']} overdue by {late:.0f}s",
                "detail": f"due to go to {timer['goto']}; the daemon holding the lease "
                f"process:{name} has not fired it",
                "since": rfc3339(float(timer["due"])),
                "subject": {**subject, "due": rfc3339(float(timer["due"]))},
                "link": f"#/processes/{path}",
                "actions": [],
            }
        )
    return items
