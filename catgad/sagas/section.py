"""The `sagas:` section (and `runtime.sagas`): what catgad.app gathers, and what the built
value offers the daemon as a reactor (catgad.reactors.feature)."""

from __future__ import annotations

from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from catgad.aggregates.payload import payload_validator
from catgad.config.section import Building, Linting, Section
from catgad.consumer.settings import LeasedSettings, build_leased, leased_schema
from catgad.model import Config
from catgad.reactors.feature import Plugins, RunScenario
from catgad.reactors.runner import ReactorRunner
from catgad.reactors.send import CommandSender
from catgad.sagas import schema
from catgad.sagas.build import build_sagas
from catgad.sagas.lint import lint_sagas
from catgad.sagas.model import SagaDef
from catgad.store.protocol import EventStore

DEFAULTS = LeasedSettings(lease_ttl=10.0, poll_interval=0.2)


class Sagas(dict[str, SagaDef]):
    """The sagas by name, how daemons hand them over (`runtime.sagas`), and how they run."""

    key = "sagas"
    description = "Start, follow, retry and cancel sagas"
    settings: LeasedSettings = DEFAULTS

    def runner(
        self,
        config: Config,
        store: EventStore,
        sender: CommandSender,
        *,
        owner: str,
        registry: CollectorRegistry | None,
    ) -> ReactorRunner:
        from catgad.sagas.runner import SagaRunner

        return SagaRunner(config, store, sender, owner=owner, registry=registry)

    def routes(self, runner: Any, access: Any) -> list[BaseRoute]:
        from catgad.sagas.http import SagaEndpoints

        return list(SagaEndpoints(runner).routes(access))

    def openapi(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from catgad.sagas.openapi import saga_paths, saga_schemas

        return saga_paths(self), saga_schemas(self)

    def scenarios(self, config: Config, plugins: Plugins, pattern: str | None) -> list[RunScenario]:
        from catgad.sagas.scenarios import build_scenarios, run_saga_scenario

        return [
            partial(run_saga_scenario, config, scenario, plugins)
            for saga in self.values()
            for scenario in build_scenarios(saga)
            if pattern is None or pattern in scenario.name
        ]

    async def inbox(self, runner: Any) -> list[dict[str, Any]]:
        from catgad.sagas.inbox import inbox_items

        return await inbox_items(runner)

    def page(self) -> Any:
        return sorted(self)

    def diagram(self, name: str, form: str, config: Config) -> str | None:
        from catgad.sagas.diagram import emits, saga_diagram, saga_svg

        if name not in self:
            return None
        draw = saga_svg if form == "svg" else saga_diagram
        return draw(self[name], emits(config))


def _build(raw: Any, ctx: Building) -> Sagas:
    built = Sagas(build_sagas(raw or {}, ctx.cel, ctx.where, payload_validator))
    built.settings = build_leased(ctx, "sagas", DEFAULTS)
    return built


def _lint(raw: Any, built: Sagas, ctx: Linting) -> None:
    lint_sagas(ctx.data, ctx.exprs, ctx.reporter, ctx.resolves, ctx.schema_of, _emits(ctx))


def _emits(ctx: Linting) -> Any:
    def emits(command: str) -> list[str] | None:
        """The event types a rule command emits; None for a handler's (it decides)."""
        raw = ctx.raw("commands").get(command)
        if not isinstance(raw, dict) or "handler" in raw:
            return None
        emitted = raw.get("emit") or []
        return [e["event"] for e in emitted if isinstance(e, dict) and "event" in e]

    return emits


SAGAS = Section(
    "sagas",
    schema.SECTION,
    _build,
    Sagas,
    lint=_lint,
    runtime=leased_schema(
        "How the daemons sharing a store hand the driving of sagas over (each saga's "
        "instances are driven by the holder of its lease; every daemon lists them).",
        "a saga",
        DEFAULTS,
    ),
)
