"""Every handler of a config, built once when the service starts and closed when it stops.

Plugins are imported here, each checked against the way it is used (a
command handler takes (command, state), an upcaster (event)); a plugin that
is not installed, does not import or has the wrong signature is a ConfigError
positioned at its `entry_point`, so `catgad validate` and `catgad run` report
it like any other config mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from catgad.aggregates.model import CommandDef, EventDef
from catgad.errors import CommandRejected, ConfigError, ConfigIssue
from catgad.handlers.plugin import PluginError, PluginHandler, Use, load
from catgad.handlers.protocol import Handler, HandlerReply, HandlerRequest, ReplyCheck
from catgad.handlers.section import HandlerConfig
from catgad.handlers.webhook import WebhookHandler
from catgad.observability.metrics import HandlerMetrics

Plugins = Mapping[str, Callable[..., Any]]


class Definitions(Protocol):
    """What handlers are built from: a config (catgad.model.Config) has it."""

    @property
    def path(self) -> str: ...
    @property
    def handlers(self) -> Mapping[str, HandlerConfig]: ...
    @property
    def commands(self) -> Mapping[str, CommandDef]: ...
    @property
    def events(self) -> Mapping[str, EventDef]: ...


def plugin_uses(config: Definitions) -> dict[str, set[Use]]:
    """Each plugin handler's uses: by commands, by upcasters (none: only loaded)."""
    uses: dict[str, set[Use]] = {
        name: set() for name, cfg in config.handlers.items() if cfg.kind == "plugin"
    }
    for command in config.commands.values():
        if command.handler in uses:
            uses[command.handler].add("command")
    for event in config.events.values():
        for step in event.upcasters.values():
            if step.handler in uses:
                uses[step.handler].add("upcaster")
    return uses


def load_plugins(config: Definitions) -> dict[str, Callable[..., Any]]:
    """Import every plugin handler of `config`; ConfigError lists each one that fails."""
    loaded: dict[str, Callable[..., Any]] = {}
    issues: list[ConfigIssue] = []
    for name, uses in plugin_uses(config).items():
        cfg = config.handlers[name]
        try:
            loaded[name] = load(cfg.entry_point or "", uses)
        except PluginError as exc:
            where = cfg.entry_point_where or cfg.where
            file, line, column = (where.file, where.line, where.column) if where else ("", 0, 0)
            issues.append(
                ConfigIssue(
                    file or config.path, line, column, f"handlers.{name}.entry_point", str(exc)
                )
            )
    if issues:
        raise ConfigError(issues)
    return loaded


class StubHandler:
    """A handler whose reply is given in advance (scenario tests): no webhook is called."""

    kind = "stub"

    def __init__(self, name: str, reply: dict[str, Any], events: Mapping[str, EventDef]) -> None:
        self.name = name
        self._reply = reply
        self._check = ReplyCheck(name, events)

    async def __call__(self, request: HandlerRequest) -> HandlerReply:
        if "error" in self._reply:
            raise CommandRejected(str(self._reply["error"]), self.name)
        return self._check.reply(self._reply)

    async def close(self) -> None:
        return None


class HandlerRegistry(Mapping[str, Handler]):
    """The handlers by name; a Mapping, so the engine needs nothing more."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._metrics: tuple[CollectorRegistry, HandlerMetrics] | None = None

    @classmethod
    def from_config(cls, config: Definitions, plugins: Plugins | None = None) -> HandlerRegistry:
        """Build every handler; plugins are loaded unless already given (load_plugins)."""
        plugins = load_plugins(config) if plugins is None else plugins
        handlers: dict[str, Handler] = {}
        for name, cfg in config.handlers.items():
            if cfg.kind == "webhook":
                handlers[name] = WebhookHandler.from_config(cfg, config.events)
            else:
                handlers[name] = PluginHandler.from_config(cfg, plugins[name], config.events)
        return cls(handlers)

    def instrument(self, registry: CollectorRegistry) -> HandlerMetrics:
        """Report every handler's calls, retries and circuit to `registry` (/metrics); once
        per registry, which refuses a second family of the same name."""
        if self._metrics is not None and self._metrics[0] is registry:
            return self._metrics[1]
        metrics = HandlerMetrics(registry)
        self._metrics = (registry, metrics)
        for name, handler in self._handlers.items():
            instrument = getattr(handler, "instrument", None)
            if instrument is not None:  # a stub of a scenario test has nothing to report
                instrument(metrics.stats(name))
        return metrics

    def __getitem__(self, name: str) -> Handler:
        return self._handlers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    async def close(self) -> None:
        """Close every handler (connection pools); the first error is raised after all tried."""
        first: BaseException | None = None
        for handler in self._handlers.values():
            try:
                await handler.close()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first
