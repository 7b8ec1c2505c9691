"""Builds each projection's target, sharing one connection (pool, file) per server or file.

Client libraries are imported only when a projection uses their backend, so a
config without Redis or PostgreSQL projections never loads their clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from catgad.config.section import checked_options
from catgad.handlers.section import HandlerConfig
from catgad.projections.model import ProjectionDef
from catgad.projections.schema import TARGET_OPTIONS
from catgad.projections.targets.handler import Delivery, HandlerTarget
from catgad.projections.targets.protocol import ProjectionTarget
from catgad.store.protocol import EventStore


class Targets:
    """Every target of a runtime, and the shared connections behind them."""

    def __init__(self, handlers: Mapping[str, HandlerConfig], store: EventStore) -> None:
        self.handlers = handlers
        self.store = store
        self._shared: dict[tuple[str, str], Any] = {}

    def build(self, projection: ProjectionDef) -> ProjectionTarget | HandlerTarget:
        target = projection.target
        if target.kind in ("webhook", "plugin"):
            return HandlerTarget(projection.name, self._delivery(projection), self.store)
        options = _checked(projection, target.kind, target.options)
        if target.kind == "sqlite":
            from catgad.projections.targets.sqlite import SQLiteDatabase, SQLiteTarget

            path = target.path or ":memory:"
            db = self._share("sqlite", path, lambda: SQLiteDatabase(path, **options))
            return SQLiteTarget(projection, db)
        if target.kind == "postgres":
            from catgad.projections.targets.postgres import PostgresDatabase, PostgresTarget

            url = target.url or ""
            pg = self._share("postgres", url, lambda: PostgresDatabase(url, **options))
            return PostgresTarget(projection, pg)
        from catgad.projections.targets.redis import RedisConnection, RedisTarget

        url = target.url or ""
        conn = self._share("redis", url, lambda: RedisConnection(url, **options))
        return RedisTarget(projection, conn)

    def _share(self, kind: str, where: str, make: Any) -> Any:
        key = (kind, where)
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def _delivery(self, projection: ProjectionDef) -> Delivery:
        handler = self.handlers[projection.target.handler or ""]
        if handler.kind == "webhook":
            from catgad.projections.targets.webhook import WebhookDelivery

            return WebhookDelivery(handler)
        from catgad.projections.targets.plugin import PluginDelivery

        return PluginDelivery(handler)

    async def close(self) -> None:
        shared, self._shared = self._shared, {}
        for resource in shared.values():
            await resource.close()


def _checked(projection: ProjectionDef, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    at = f"projections.{projection.name}.target.options"
    known = TARGET_OPTIONS[kind]
    return checked_options(at, f"a {kind} target", options, known, projection.where)
