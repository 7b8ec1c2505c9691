"""The operator inbox: everything waiting for a person, in one list, each with its actions.

`GET /inbox` (scope `read`) gathers what this daemon knows of (every daemon follows
the log, and reads dead letters and projection status from the store):

| kind | when it is listed | actions (scope) |
| --- | --- | --- |
| `dead_letter` | an open dead letter of a projection | replay, skip (manage) |
| `failed_saga` | a compensation exhausted its retries | retry (manage) |
| `approval` | a process instance waits for a person | approve, reject (the state's scope) |
| `overdue_timer` | a process timer OVERDUE_AFTER past due, not fired | none (see below) |
| `projection` | stopped, failed, retrying, or LAGGING_AFTER behind | start, rebuild (manage) |

An overdue timer has no action of its own: the daemon holding the lease
`process:<name>` should have fired it, and that daemon is what to look at.
A projection switched off in the config (`enabled: false`) is nobody's to-do.

Items come oldest first (`since`); each names its `actions` as the request to make
(method, href, scope, and for a decision the optional `{"comment"}` body), and a
`link` into the dashboard (catgad.http.ui). The counts per kind are also the gauge
`catgad_inbox_items{kind}`, refreshed on every GET /inbox and every REFRESH seconds
while the daemon serves HTTP (the app's lifespan), so an alert can point at the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Gauge
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catgad.consumer.clock import rfc3339
from catgad.http.access import Access
from catgad.http.routes import json_response
from catgad.observability.logs import get_logger
from catgad.projections import deadletters
from catgad.reactors.feature import reactors_of
from catgad.runtime import Runtime

log = get_logger("catgad.inbox")

KINDS = ("dead_letter", "failed_saga", "approval", "overdue_timer", "projection")
OVERDUE_AFTER = 5.0  # seconds past due before a timer not fired is a person's business
LAGGING_AFTER = 60.0  # seconds the oldest event not applied by a projection may wait
REFRESH = 15.0  # seconds between refreshes of the gauge while serving
SHOWN = 100  # items of one projection's dead letters, or of one saga's failures, listed


def quoted(part: str) -> str:
    return quote(part, safe="")


def action(name: str, href: str, scope: str, *, comment: bool = False) -> dict[str, Any]:
    action: dict[str, Any] = {"name": name, "method": "POST", "href": href, "scope": scope}
    if comment:
        action["body"] = {"comment": "optional: recorded with the decision"}
    return action


_metrics: weakref.WeakKeyDictionary[Runtime, InboxMetrics] = weakref.WeakKeyDictionary()


class InboxMetrics:
    """One gauge family: the inbox's items per kind, every kind shown from the start at 0."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Gauge(
            "catgad_inbox_items",
            "Items waiting for a person in the operator inbox (GET /inbox), by kind: "
            "dead_letter, failed_saga, approval, overdue_timer, projection.",
            ["kind"],
            registry=registry,
        )
        self._children = {kind: self.items.labels(kind) for kind in KINDS}

    def refresh(self, counts: dict[str, int]) -> None:
        for kind, child in self._children.items():
            child.set(counts.get(kind, 0))


class Inbox:
    """Gathers the inbox from one runtime; see the module docstring."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.metrics = _metrics.get(runtime) or InboxMetrics(runtime.metrics.registry)
        _metrics[runtime] = self.metrics  # one gauge per registry, however many apps

    async def gather(self) -> dict[str, Any]:
        items, letters = await self._dead_letters()
        for reactor in reactors_of(self.runtime.config):
            items += await reactor.inbox(self.runtime.reactor(reactor.key))
        items += await self._projections()
        items.sort(key=lambda item: str(item["since"] or ""))
        counts = {kind: sum(1 for i in items if i["kind"] == kind) for kind in KINDS}
        counts["dead_letter"] = letters  # all of them, not only those listed
        self.metrics.refresh(counts)
        return {
            "generated_at": rfc3339(time.time()),
            "total": sum(counts.values()),
            "counts": counts,
            "items": items,
        }

    async def _dead_letters(self) -> tuple[list[dict[str, Any]], int]:
        """The open dead letters listed (SHOWN per projection at most), and how many in all."""
        items: list[dict[str, Any]] = []
        total = 0
        for name in self.runtime.projections.projections:
            letters = await deadletters.open_letters(self.runtime.store, name)
            total += len(letters)
            base = f"/projections/{quoted(name)}"
            for letter in letters[:SHOWN]:
                event = f"?event_id={quoted(letter.event.id)}"
                items.append(
                    {
                        "kind": "dead_letter",
                        "key": f"dead_letter:{name}:{letter.id}",
                        "title": f"{name}: {letter.event.type} of {letter.event.subject} "
                        "not applied",
                        "detail": letter.reason,
                        "since": letter.time,
                        "subject": {"projection": name, **letter.to_dict()},
                        "link": f"#/projections/{quoted(name)}",
                        "actions": [
                            action("replay", f"{base}/replay{event}", "manage"),
                            action("skip", f"{base}/skip{event}", "manage"),
                        ],
                    }
                )
        return items, total

    async def _projections(self) -> list[dict[str, Any]]:
        manager = self.runtime.projections
        items: list[dict[str, Any]] = []
        for name, projection in manager.projections.items():
            if not projection.enabled:
                continue  # switched off in the config: nobody's to-do
            status = await manager.status(name)
            why = _projection_trouble(status)
            if why is None:
                continue
            base = f"/projections/{quoted(name)}"
            actions = [action("rebuild", f"{base}/rebuild", "manage")]
            if status["status"] in ("stopped", "failed"):
                actions.insert(0, action("start", f"{base}/start", "manage"))
            lag = status.get("lag") or {}
            seconds = lag.get("seconds") or 0.0
            items.append(
                {
                    "kind": "projection",
                    "key": f"projection:{name}",
                    "title": f"projection {name} {why}",
                    "detail": status.get("last_error") or f"{lag.get('events') or 0} events behind",
                    "since": rfc3339(time.time() - seconds),
                    "subject": {
                        "projection": name,
                        "status": status["status"],
                        "checkpoint": status.get("checkpoint"),
                        "lag": lag,
                    },
                    "link": f"#/projections/{quoted(name)}",
                    "actions": actions,
                }
            )
        return items

    # -- the gauge between requests ------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """The app's lifespan: refresh the gauge every REFRESH seconds while serving."""
        task = asyncio.create_task(self._refresh(), name="inbox-metrics")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh(self) -> None:
        while True:
            try:
                await self.gather()
            except Exception as exc:  # a store down: the next round tries again
                log.warning("inbox not gathered", error=getattr(exc, "detail", repr(exc)))
            await asyncio.sleep(REFRESH)


def _projection_trouble(status: dict[str, Any]) -> str | None:
    """Why a projection needs a person, or None."""
    state = status["status"]
    if state == "stopped":
        return "is stopped"
    if state == "failed":
        return "has failed"
    if status.get("retrying"):
        return "keeps failing and retries"
    seconds = (status.get("lag") or {}).get("seconds") or 0.0
    if state == "running" and seconds > LAGGING_AFTER:
        return f"lags {seconds:.0f}s behind"
    return None


class InboxEndpoints:
    def __init__(self, runtime: Runtime) -> None:
        self.inbox = Inbox(runtime)

    def routes(self, access: Access) -> list[Route]:
        return [access.route("read", "/inbox", self.listing, "GET")]

    async def listing(self, request: Request) -> Response:
        return json_response(await self.inbox.gather())
