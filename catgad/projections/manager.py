"""Every projection of a runtime: their runners, their status, control, queries and replays.

HTTP and the CLI talk to this object only. A projection with `enabled: false`
has no runner and reports `stopped`. Queries read the live read model of the
target directly, whichever daemon holds the projection's lease.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable
from typing import Any

from catgad.errors import CatgadError, NotFound, NotQueryable, ProjectionDisabled
from catgad.model import Config
from catgad.observability.logs import get_logger
from catgad.projections import deadletters
from catgad.projections.feed import AppendFeed
from catgad.projections.metrics import ProjectionMetrics
from catgad.projections.model import ProjectionDef
from catgad.projections.replay import replay_letters
from catgad.projections.runner import ProjectionRunner, RunnerSettings, lease_name
from catgad.projections.section import PROJECTIONS
from catgad.projections.targets.factory import Targets
from catgad.projections.targets.handler import HandlerTarget
from catgad.projections.targets.protocol import Page, ProjectionTarget, Row
from catgad.store.lease import Sharing
from catgad.store.protocol import AppendResult, EventStore

log = get_logger("catgad.projections")
DEAD_LETTERS_SHOWN = 100


def default_owner() -> str:
    """host:pid:random, so an operator can tell which process holds a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class ProjectionManager:
    def __init__(
        self,
        config: Config,
        store: EventStore,
        *,
        metrics: ProjectionMetrics | None = None,
        settings: RunnerSettings | None = None,
        owner: str | None = None,
        only: Iterable[str] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        configured = PROJECTIONS.of(config).settings
        self.settings = settings or RunnerSettings(
            lease_ttl=configured.lease_ttl,
            poll_interval=configured.poll_interval,
            linger=configured.linger,
        )
        self.owner = owner or default_owner()
        self.source = config.service.name
        wanted = set(only) if only is not None else None
        self.projections = {
            name: p
            for name, p in PROJECTIONS.of(config).items()
            if wanted is None or name in wanted
        }
        self.targets = Targets(config.handlers, store)
        self.runners: dict[str, ProjectionRunner] = {}
        self.sharing: Sharing | None = None  # set before start by a worker of several
        self.feed = AppendFeed()  # this process's appends, taken by live runners unread

    async def start(self, *, run: bool = True) -> None:
        """Build every enabled projection's runner; with `run`, start consuming."""
        for name, projection in self.projections.items():
            if not projection.enabled:
                continue
            runner = ProjectionRunner(
                projection,
                self.store,
                self.targets.build(projection),
                owner=self.owner,
                source=self.source,
                settings=self.settings,
                metrics=self.metrics,
                sharing=self.sharing,
                feed=self.feed,
            )
            self.runners[name] = runner
            if run:
                runner.start()
        if self.runners and run:
            log.info("projections started", projections=sorted(self.runners), owner=self.owner)

    def lease_names(self) -> list[str]:
        """The leases start() will keep, one per enabled projection."""
        return [lease_name(name) for name, p in self.projections.items() if p.enabled]

    async def stop(self) -> None:
        """Finish each batch in hand, release the leases, close the targets."""
        runners, self.runners = self.runners, {}
        for runner in runners.values():
            try:
                await runner.stop()
            except Exception:
                log.exception("projection did not stop cleanly", projection=runner.name)
        await self.targets.close()

    def abort(self) -> None:
        """As kill -9 would leave things: nothing released (tests)."""
        for runner in self.runners.values():
            runner.abort()

    def notify(self, appended: AppendResult | None = None) -> None:
        """Something was appended in this process (`appended`, when known: fed to the runners)."""
        if appended is not None and self.runners:  # nothing runs here (a CLI): nobody takes it
            self.feed.add(appended)
        for runner in self.runners.values():
            runner.notify()

    # -- lookup -------------------------------------------------------------------------------

    def definition(self, name: str) -> ProjectionDef:
        projection = self.projections.get(name)
        if projection is None:
            raise NotFound("projection", name)
        return projection

    def runner(self, name: str) -> ProjectionRunner:
        projection = self.definition(name)
        runner = self.runners.get(name)
        if runner is None:
            raise ProjectionDisabled(projection.name)
        return runner

    async def table(self, name: str) -> ProjectionTarget:
        """The live read model of a table projection, opened (Unavailable when it cannot be)."""
        runner = self.runner(name)
        if isinstance(runner.target, HandlerTarget):
            raise NotQueryable(name, runner.target.kind)
        await runner.open()
        return runner.target

    # -- status -------------------------------------------------------------------------------

    async def statuses(self) -> list[dict[str, Any]]:
        return [await self.status(name) for name in self.projections]

    async def status(self, name: str, *, detail: bool = False) -> dict[str, Any]:
        projection = self.definition(name)
        runner = self.runners.get(name)
        if runner is None:
            body: dict[str, Any] = {
                "name": name,
                "status": "stopped",
                "enabled": False,
                "target": {
                    "kind": projection.target.kind,
                    "location": projection.target.location(),
                },
            }
        else:
            body = await runner.status()
        if projection.description:
            body["description"] = projection.description
        body["events"] = list(projection.events)
        if detail:
            try:
                letters = await deadletters.open_letters(self.store, name)
            except CatgadError as exc:
                body["dead_letters"] = {"error": exc.detail}
            else:
                body["dead_letters"] = {
                    "count": len(letters),
                    "stream": deadletters.stream(name),
                    "items": [letter.to_dict() for letter in letters[:DEAD_LETTERS_SHOWN]],
                }
        return body

    # -- control ------------------------------------------------------------------------------

    async def rebuild(self, name: str) -> bool:
        """Start a rebuild; False when one is already under way."""
        started = await self.runner(name).request_rebuild()
        if started:
            log.info("rebuild requested", projection=name)
        return started

    async def set_running(self, name: str, running: bool) -> None:
        await self.runner(name).set_running(running)
        log.info("projection started" if running else "projection stopped", projection=name)

    async def replay(self, name: str, *, event_id: str | None = None) -> dict[str, Any]:
        """Replay the open dead letters (or the one of `event_id`) after a fix."""
        runner = self.runner(name)
        await runner.open()
        return await replay_letters(
            runner.projection, self.store, runner.target, self.source, event_id=event_id
        )

    async def skip(self, name: str, *, event_id: str | None = None) -> dict[str, Any]:
        """Close the open dead letters (or the one of `event_id`) without applying them: an
        operator decided the read model goes without them. Each is closed by the same
        `catgad.deadletter.replayed` event as a replay, with the outcome `skipped`."""
        self.definition(name)
        letters = await deadletters.open_letters(self.store, name)
        if event_id is not None:
            letters = [letter for letter in letters if letter.event.id == event_id]
            if not letters:
                raise NotFound(f"open dead letter of projection {name!r} for the event", event_id)
        for letter in letters:
            await deadletters.mark_replayed(self.store, name, letter, "skipped", self.source)
            log.warning("dead letter skipped", projection=name, event_id=letter.event.id)
        return {"projection": name, "skipped": [letter.to_dict() for letter in letters]}

    # -- queries ------------------------------------------------------------------------------

    async def get(self, name: str, key: str) -> Row:
        row = await (await self.table(name)).get(key)
        if row is None:
            raise NotFound(f"row of projection {name!r} with key", key)
        return row

    async def find(
        self, name: str, column: str | None, value: Any, *, limit: int, cursor: str | None
    ) -> Page:
        return await (await self.table(name)).find(column, value, limit=limit, cursor=cursor)
