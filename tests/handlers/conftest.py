"""Fixtures of the handler tests: the ticket service, its webhook servers, the Node install."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from catgad.app.load import load_config
from catgad.engine.commands import CommandEngine
from catgad.handlers.registry import HandlerRegistry
from catgad.model import Config
from catgad.store.memory import MemoryStore
from tests.handlers.servers import SECRET, ServerError, WebhookServer, npm_install
from tests.support.ci import needed


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "node: needs Node.js and npm (the example webhook)")


TICKETS = """
catgad: 1
service: {{name: tickets}}
store: {store}
aggregates:
  Ticket:
    id: ticket_id
    initial: {{status: none}}
    on:
      TicketOpened: {{set: {{status: "'open'", title: data.title}}}}
      TicketTriaged: {{set: {{priority: data.priority}}}}
      # CEL does not multiply a double by an int: every TicketEscalated breaks this rule
      # (tests/handlers/test_unappliable_events.py), and must be refused, never stored.
      TicketEscalated: {{set: {{escalation: data.level * 2}}}}
commands:
  OpenTicket:
    aggregate: Ticket
    schema:
      type: object
      required: [ticket_id, title]
      properties: {{ticket_id: {{type: string}}, title: {{type: string}}}}
    require: [{{rule: version == 0, message: the ticket exists}}]
    emit: [{{event: TicketOpened, data: {{ticket_id: data.ticket_id, title: data.title}}}}]
  Triage:
    aggregate: Ticket
    handler: triage
    schema:
      type: object
      required: [ticket_id]
      properties: {{ticket_id: {{type: string}}, priority: {{type: integer}}}}
events:
  TicketOpened:
    schema:
      type: object
      required: [ticket_id, title]
      properties: {{ticket_id: {{type: string}}, title: {{type: string}}}}
  TicketTriaged:
    schema:
      type: object
      required: [ticket_id, priority]
      additionalProperties: false
      properties:
        ticket_id: {{type: string}}
        priority: {{type: integer, minimum: 1, maximum: 5}}
        by: {{type: string}}
  TicketEscalated:
    schema:
      type: object
      required: [ticket_id, level]
      properties: {{ticket_id: {{type: string}}, level: {{type: number}}}}
handlers:
  triage:
    kind: webhook
    url: {url}
{options}
"""


def tickets_yaml(tmp_path: Path, url: str, *, store: str = "memory", **options: Any) -> Path:
    """The ticket service with its `triage` webhook at `url`; options go to the handler."""
    options.setdefault("secret", SECRET)
    options.setdefault("timeout", 10)  # generous: a loaded machine must not cause retries
    options.setdefault("retries", 0)
    options.setdefault("backoff", {"initial": 0.01, "max": 0.05})
    lines = "\n".join(f"    {key}: {_flow(value)}" for key, value in options.items())
    text = TICKETS.format(url=url, store=store, options=lines)
    path = tmp_path / "tickets.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def _flow(value: Any) -> str:
    return json.dumps(value)  # JSON is YAML flow style


class Tickets:
    """The ticket service in-process: engine, handlers and a memory store."""

    def __init__(self, config: Config, engine: CommandEngine, handlers: HandlerRegistry) -> None:
        self.config = config
        self.engine = engine
        self.handlers = handlers
        self.store = engine.store

    async def open(self, ticket_id: str = "t1") -> None:
        await self.engine.execute(
            "OpenTicket", {"ticket_id": ticket_id, "title": "printer on fire"}
        )

    async def triage(self, ticket_id: str = "t1", **data: Any) -> Any:
        return await self.engine.execute("Triage", {"ticket_id": ticket_id, **data})


@asynccontextmanager
async def tickets(tmp_path: Path, url: str, **options: Any) -> AsyncIterator[Tickets]:
    """The ticket service in-process with its `triage` webhook at `url`."""
    config = load_config(tickets_yaml(tmp_path, url, **options), env={})
    handlers = HandlerRegistry.from_config(config)
    store = MemoryStore()
    await store.open()
    try:
        yield Tickets(config, CommandEngine(config, store, handlers=handlers), handlers)
    finally:
        await handlers.close()
        await store.close()


@pytest.fixture
def faults() -> Iterator[WebhookServer]:
    """A fresh fault server per test (request counts start at zero)."""
    with WebhookServer.python_faults(slow=3.0) as server:
        yield server


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "catgad-tests"
    try:
        return npm_install(cache)
    except ServerError as exc:
        needed("Node.js and npm (the example webhook servers)", str(exc))
