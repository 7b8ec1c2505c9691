"""A process runner wired as a daemon wires it, for the tests that run one without a daemon:
the engine tells the runner of each append, the runner sends through the router."""

from __future__ import annotations

from typing import Any

from catgad.engine.commands import CommandEngine
from catgad.engine.routing import CommandRouter
from catgad.model import Config
from catgad.processes.runner import ProcessRunner
from catgad.reactors.send import RouterSender
from catgad.store.protocol import EventStore


def wired_runner(
    config: Config, store: EventStore, **options: Any
) -> tuple[CommandEngine, ProcessRunner]:
    """The engine and a (not started) runner on `store`; `options` go to ProcessRunner."""
    box: list[ProcessRunner] = []
    engine = CommandEngine(config, store, on_appended=lambda r: box[0].notify(r) if box else None)
    router = CommandRouter(engine, None, service=config.service.name)
    runner = ProcessRunner(config, store, RouterSender(router, config.service.name), **options)
    box.append(runner)
    return engine, runner
