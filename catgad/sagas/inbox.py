"""What sagas put in the operator inbox (catgad.http.inbox): each failed saga, with retry."""

from __future__ import annotations

from typing import Any

from catgad.errors import CatgadError
from catgad.http.inbox import SHOWN, action, quoted
from catgad.sagas.runner import SagaRunner


async def inbox_items(runner: SagaRunner) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for name in runner.sagas:
        for summary in runner.listing(name, "failed")[:SHOWN]:
            instance = summary["id"]
            try:
                reason = (await runner.instance(name, instance)).reason
            except CatgadError:
                reason = None
            path = f"{quoted(name)}/{quoted(instance)}"
            items.append(
                {
                    "kind": "failed_saga",
                    "key": f"failed_saga:{name}:{instance}",
                    "title": f"saga {name} {instance} failed to compensate",
                    "detail": reason,
                    "since": summary["updated_at"],
                    "subject": {"saga": name, "id": instance, "step": summary["step"]},
                    "link": f"#/sagas/{path}",
                    "actions": [action("retry", f"/sagas/{path}/retry", "manage")],
                }
            )
    return items
