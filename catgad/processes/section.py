"""The `processes:` section (and `runtime.processes`): what catgad.app gathers, and what the
built value offers the daemon as a reactor (catgad.reactors.feature)."""

from __future__ import annotations

from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from catgad.config.section import Building, Linting, Section
from catgad.consumer.settings import LeasedSettings, build_leased, leased_schema
from catgad.model import Config
from catgad.processes import schema
from catgad.processes.build import build_processes
from catgad.processes.lint import lint_processes
from catgad.processes.model import ProcessDef
from catgad.reactors.feature import Plugins, RunScenario
from catgad.reactors.runner import ReactorRunner
from catgad.reactors.send import CommandSender
from catgad.store.protocol import EventStore
from catgad.testing.scenarios import Outcome

DEFAULTS = LeasedSettings(lease_ttl=10.0, poll_interval=0.2)


class Processes(dict[str, ProcessDef]):
    """The processes by name, how daemons hand them over (`runtime.processes`), and how
    they run."""

    key = "processes"
    description = "Process state machines: instances, approvals, diagrams"
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
        from catgad.processes.runner import ProcessRunner

        return ProcessRunner(config, store, sender, owner=owner, registry=registry)

    def routes(self, runner: Any, access: Any) -> list[BaseRoute]:
        from catgad.processes.http import ProcessEndpoints

        return list(ProcessEndpoints(runner, access).routes(access))

    def openapi(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from catgad.processes.openapi import process_paths

        return process_paths(self), {}

    def scenarios(self, config: Config, plugins: Plugins, pattern: str | None) -> list[RunScenario]:
        from catgad.processes.scenarios import build_scenarios, run_process_scenario

        async def run(process: ProcessDef, scenario: Any) -> Outcome:
            return run_process_scenario(process, scenario)  # no I/O: it moves a clock

        return [
            partial(run, process, scenario)
            for process in self.values()
            for scenario in build_scenarios(process)
            if pattern is None or pattern in scenario.name
        ]

    async def inbox(self, runner: Any) -> list[dict[str, Any]]:
        from catgad.processes.inbox import inbox_items

        return await inbox_items(runner)

    def page(self) -> Any:
        return {
            name: {
                "states": list(p.states),
                "approvals": [s for s, d in p.states.items() if d.approval is not None],
            }
            for name, p in sorted(self.items())
        }

    def diagram(self, name: str, form: str, config: Config) -> str | None:
        from catgad.processes.diagram import process_diagram, process_svg

        if name not in self:
            return None
        return process_svg(self[name]) if form == "svg" else process_diagram(self[name])


def _build(raw: Any, ctx: Building) -> Processes:
    built = Processes(build_processes(raw or {}, ctx.cel, ctx.where))
    built.settings = build_leased(ctx, "processes", DEFAULTS)
    return built


def _lint(raw: Any, built: Processes, ctx: Linting) -> None:
    lint_processes(ctx.data, ctx.exprs, ctx.reporter, ctx.resolves, ctx.schema_of)


PROCESSES = Section(
    "processes",
    schema.SECTION,
    _build,
    Processes,
    lint=_lint,
    runtime=leased_schema(
        "How the daemons sharing a store hand the driving of processes over (timers, "
        "events, commands: the holder of each process's lease).",
        "a process",
        DEFAULTS,
    ),
)
