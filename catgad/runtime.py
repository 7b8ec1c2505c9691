"""The running service: config, opened store, command engine and metrics, owned together.

    async with Runtime.start(config) as rt:
        result = await rt.execute("CreateOrder", {...})

The daemon serves one Runtime over HTTP; `catgad send` and `catgad bench` use
the same object without a server. The store and the bus are opened on entry,
closed on exit after everything that used them has finished. The daemon also
runs the outbox relay (`relay=True`; catgad.bus.relay: store -> bus, one
active per service among the daemons sharing the store), stopped first on
exit. One-shot tools do not relay: a process that exits at once should not
take the relay lease, nor, with the memory bus, move the relay's checkpoint
past events that only its own (absent) subscribers saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from catgad.bus.factory import open_bus, relay_settings
from catgad.bus.protocol import Bus
from catgad.bus.relay import Relay
from catgad.consumer.component import Component, Hooked
from catgad.engine.commands import CommandEngine, CommandResult
from catgad.engine.routing import CommandRouter, CommandSettings
from catgad.errors import CatgadError, Unavailable
from catgad.evolution.upcast import Upcasters
from catgad.handlers.protocol import Handler
from catgad.handlers.registry import HandlerRegistry, load_plugins
from catgad.model import Config
from catgad.observability.logs import get_logger
from catgad.observability.metrics import Metrics
from catgad.projections.manager import ProjectionManager
from catgad.projections.metrics import ProjectionMetrics
from catgad.projections.precheck import ProjectionPrecheck
from catgad.reactors.feature import reactors_of
from catgad.reactors.runner import ReactorRunner
from catgad.reactors.send import RouterSender
from catgad.store.factory import open_store
from catgad.store.lease import Sharing
from catgad.store.protocol import AppendResult, Coordination, EventStore

log = get_logger("catgad.runtime")

PING_TIMEOUT = 1.0  # seconds each dependency gets to answer a readiness probe


class Runtime:
    """One service instance: what every transport (HTTP, CLI, bus) runs commands through."""

    def __init__(
        self,
        config: Config,
        store: EventStore,
        *,
        metrics: Metrics | None = None,
        bus: Bus | None = None,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.metrics = metrics or Metrics()
        if isinstance(handlers, HandlerRegistry):
            handlers.instrument(self.metrics.registry)
        self.relay: Relay | None = None
        self.sharing: Sharing | None = None  # a worker of several: how their leases are dealt
        precheck = ProjectionPrecheck(config)  # a projection unable to apply them refuses them
        self.engine = CommandEngine(
            config,
            store,
            on_appended=self._appended,
            handlers=handlers,
            event_checks=[precheck] if precheck else [],
        )
        # over the bus to the stream's replica when daemons share a broker; here otherwise
        self.router = CommandRouter(
            self.engine,
            bus,
            service=config.service.name,
            settings=CommandSettings.from_options(
                config.bus.options.get("commands"), config.bus.where
            ),
        )
        self.projections = ProjectionManager(
            config, store, metrics=ProjectionMetrics(self.metrics.registry)
        )
        # each reactor of the config (sagas, processes, ...): made here so every daemon
        # lists its instances; run where the projections run (see _components)
        self.reactors: dict[str, ReactorRunner] = {
            reactor.key: reactor.runner(
                config,
                store,
                RouterSender(self.router, config.service.name),
                owner=self.projections.owner,
                registry=self.metrics.registry,
            )
            for reactor in reactors_of(config)
        }
        self.components: list[Component] = []  # started in order, stopped in reverse

    def reactor(self, key: str) -> ReactorRunner:
        """The runner of the config's reactor section `key` (sagas, processes, ...)."""
        return self.reactors[key]

    def _appended(self, result: AppendResult) -> None:
        self.metrics.appended(result)
        for component in self.components:
            component.notify(result)

    def _components(self, *, relay: bool, projections: bool, commands: bool) -> list[Component]:
        """What runs beside the engine, in the order it starts (and the reverse it stops in):
        the relay, the projections, the reactors, and last the routed commands, so that
        on the way out the command in hand finishes before the rest stops."""
        parts: list[Component] = []
        if relay and self._relay() is not None:
            assert self.relay is not None
            parts.append(
                Hooked(
                    "relay",
                    _started(self.relay.start),
                    self.relay.stop,
                    self.relay.notify,
                    self.relay.status,
                )
            )
        manager = self.projections
        parts.append(
            Hooked(
                "projections",
                lambda: manager.start(run=projections),
                manager.stop,
                manager.notify,
            )
        )
        if projections:  # the daemon's reactors run where its projections do
            parts += [runner for runner in self.reactors.values() if runner]
        if commands:
            parts.append(Hooked("commands", self.router.start, self.router.stop))
        if self.sharing is not None:
            self._deal(self.sharing, relay=self.relay if relay else None, reactors=projections)
        return parts

    def _deal(self, sharing: Sharing, *, relay: Relay | None, reactors: bool) -> None:
        """Give the lease keepers of what runs here the worker's share."""
        names = []
        if relay is not None:
            relay.lease.sharing = sharing
            names.append(relay.name)
        self.projections.sharing = sharing
        names += self.projections.lease_names()
        if reactors:
            for runner in self.reactors.values():
                runner.sharing = sharing
                names += runner.lease_names()
        sharing.deal(names)

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        config: Config,
        *,
        store: EventStore | None = None,
        bus: Bus | None = None,
        relay: bool = False,
        projections: bool = False,
        commands: bool = False,
        worker: tuple[int, int] | None = None,
    ) -> AsyncIterator[Runtime]:
        """Open the config's store (or the one given) and bus, run the relay if asked, yield, close.

        A bus given is the caller's: used, neither opened nor closed here. `commands=True`
        (the daemon) serves this replica's share of the routed commands (catgad.engine.routing).
        `worker`: (number, count) of `catgad run --workers`, whose leases are shared out
        (catgad.store.lease.Sharing).
        """
        # Plugins first: one that cannot be imported is a ConfigError before anything opens.
        # The store is seen through the upcasters, so every read is at the newest version.
        plugins = load_plugins(config)
        upcasters = Upcasters(config, plugins)
        if store is None:
            store = open_store(config.store)
        handlers = HandlerRegistry.from_config(config, plugins)
        try:
            await store.open()
        except BaseException:
            await handlers.close()
            raise
        store = upcasters.wrap(store)
        try:
            own_bus = bus is None
            if bus is None:
                bus = open_bus(config.bus)
                await bus.open()
            try:
                runtime = cls(config, store, bus=bus, handlers=handlers)
                if worker is not None:
                    runtime.sharing = Sharing(*worker)
                parts = runtime._components(relay=relay, projections=projections, commands=commands)
                try:
                    for part in parts:
                        await part.start()
                        runtime.components.append(part)
                    yield runtime
                finally:
                    for part in reversed(runtime.components):
                        try:
                            await part.stop()
                        except Exception:
                            log.exception("component did not stop cleanly", component=part.name)
                    runtime.components.clear()
            finally:
                if own_bus:
                    await bus.close()
        finally:
            try:
                await handlers.close()
            finally:
                await store.close()

    def _relay(self) -> Relay | None:
        """The relay publishing the store's events to the bus (standby while another daemon
        does), made once; None without a bus or a store that has leases."""
        if self.relay is not None or self.bus is None:
            return self.relay
        store = self.store
        if not isinstance(store, Coordination):
            log.warning(
                "events are not relayed to the bus: this store has no leases and checkpoints",
                store=store.name,
            )
            return None
        settings = relay_settings(self.config.bus)
        self.relay = Relay(
            store,
            self.bus,
            self.config.service.name,
            settings,
            owner=self.projections.owner,  # one lease identity per daemon
            registry=self.metrics.registry,
        )
        return self.relay

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
            result = await self.router.execute(
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
            async with asyncio.timeout(PING_TIMEOUT):
                await self.store.ping()
        except Unavailable:
            raise
        except TimeoutError:
            why = f"no answer within {PING_TIMEOUT:g}s"
            raise Unavailable(f"store ({self.store.name})", why) from None
        except Exception as exc:  # a backend that forgot to convert its client's error
            raise Unavailable(f"store ({self.store.name})", str(exc) or type(exc).__name__) from exc
        checks = {"store": "ok"}
        if self.bus is not None:
            await self._check_bus(self.bus)
            checks["bus"] = "ok"
        if self.relay is not None:
            checks["relay"] = self.relay.state  # active here, or standby: another daemon relays
        checks["commands"] = "routed" if self.router.routed else "local"
        return checks

    async def _check_bus(self, bus: Bus) -> None:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await bus.ping()
        except Unavailable:
            raise
        except TimeoutError:
            raise Unavailable(f"bus ({bus.name})", f"no answer within {PING_TIMEOUT:g}s") from None
        except Exception as exc:
            raise Unavailable(f"bus ({bus.name})", str(exc) or type(exc).__name__) from exc
        if self.relay is not None and self.relay.state == "retrying":  # it answers, but refuses
            raise Unavailable(f"bus ({bus.name})", f"publishing fails: {self.relay.last_error}")


def _started(start: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """An async start of a part whose own start() only schedules its task."""

    async def run() -> None:
        start()

    return run
