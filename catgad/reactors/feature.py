"""What a reactor (sagas, processes, ...) offers the daemon and the tools, through the value
its config section builds: a runner (a Component), its HTTP routes and OpenAPI paths, its
scenario tests for `catgad test`, and its diagrams. The daemon, the HTTP app and the CLI
find reactors in the config this way, so a new reactor needs only its own package and its
line in catgad.app.registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from catgad.model import Config
from catgad.reactors.runner import ReactorRunner
from catgad.reactors.send import CommandSender
from catgad.store.protocol import EventStore
from catgad.testing.scenarios import Outcome

Plugins = Mapping[str, Callable[..., Any]]
RunScenario = Callable[[], Awaitable[Outcome]]


@runtime_checkable
class Reactor(Protocol):
    key: str  # the config section's key, and the runner's name in the runtime
    description: str  # what its endpoints do (the OpenAPI tag's description)

    def __len__(self) -> int: ...  # how many definitions: none, and nothing runs

    def __iter__(self) -> Iterator[str]: ...  # their names

    def runner(
        self,
        config: Config,
        store: EventStore,
        sender: CommandSender,
        *,
        owner: str,
        registry: CollectorRegistry | None,
    ) -> ReactorRunner: ...

    def routes(self, runner: Any, access: Any) -> list[BaseRoute]:
        """The endpoints of `runner` (made by runner()), guarded by `access`
        (catgad.http.access.Access)."""
        ...

    def openapi(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The OpenAPI paths and component schemas of those endpoints."""
        ...

    def scenarios(self, config: Config, plugins: Plugins, pattern: str | None) -> list[RunScenario]:
        """The definitions' scenario tests whose name contains `pattern` (None: all)."""
        ...

    async def inbox(self, runner: Any) -> list[dict[str, Any]]:
        """What waits for a person (catgad.http.inbox items) in `runner`'s instances."""
        ...

    def page(self) -> Any:
        """What the dashboard needs to know of the definitions (their names, ...)."""
        ...

    def diagram(self, name: str, form: str, config: Config) -> str | None:
        """Definition `name` drawn (mermaid or svg); None when it is not one of these."""
        ...


def reactors_of(config: Config) -> list[Reactor]:
    """The config's reactor sections, in the registry's order."""
    return [value for value in config.sections.values() if isinstance(value, Reactor)]
