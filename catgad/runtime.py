"""The running service: config, opened store, command engine and metrics, owned together.

    async with Runtime.start(config) as rt:
        result = await rt.execute("CreateOrder", {...})

The daemon serves one Runtime over HTTP; `catgad send` and `catgad bench` use
the same object without a server. The store is opened on entry and closed on
exit, after everything that used it has finished.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from catgad.config.model import Config
from catgad.engine.commands import CommandEngine, CommandResult
from catgad.errors import CatgadError, Unavailable
from catgad.observability.metrics import Metrics
from catgad.store.factory import open_store
from catgad.store.protocol import EventStore


class Runtime:
    """One service instance: what every transport (HTTP, CLI, bus) runs commands through."""

    def __init__(
        self, config: Config, store: EventStore, *, metrics: Metrics | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics or Metrics()
        self.engine = CommandEngine(config, store, on_appended=self.metrics.appended)

    @classmethod
    @asynccontextmanager
    async def start(
        cls, config: Config, *, store: EventStore | None = None
    ) -> AsyncIterator[Runtime]:
        """Open the config's store (or the one given), yield the runtime, close the store."""
        if store is None:
            store = open_store(config.store)
        await store.open()
        try:
            yield cls(config, store)
        finally:
            await store.close()

    async def execute(
        self,
        command_type: str,
        body: Any,
        *,
        command_id: str | None = None,
        expected_version: int | None = None,
    ) -> CommandResult:
        """Run one command and count it; errors propagate unchanged after being counted."""
        known = command_type in self.config.commands
        started = time.perf_counter()
        try:
            result = await self.engine.execute(
                command_type, body, command_id=command_id, expected_version=expected_version
            )
        except CatgadError as exc:
            if known:  # unknown types are not counted: a URL must not mint label values
                self.metrics.command_done(command_type, exc.slug, time.perf_counter() - started)
            raise
        except Exception:
            self.metrics.command_done(command_type, "internal", time.perf_counter() - started)
            raise
        outcome = "duplicate" if result.duplicate else "ok"
        self.metrics.command_done(command_type, outcome, time.perf_counter() - started)
        return result

    async def check_ready(self) -> dict[str, str]:
        """Each dependency's status; raises Unavailable naming the first one that is down."""
        try:
            await self.store.ping()
        except Unavailable:
            raise
        except Exception as exc:  # a backend that forgot to convert its client's error
            raise Unavailable(f"store ({self.store.name})", str(exc) or type(exc).__name__) from exc
        return {"store": "ok"}
