"""Events from user code that the aggregate's rules cannot apply are refused, never stored.

A handler's reply may pass every event schema and still break the rule that
folds it into the state (CEL does not multiply a double by an int). Stored, it
would break the stream for good; it is refused instead (422 event-rule-failed,
naming the rule and the field) and the stream stays as it was. Numbers in a
handler's events are normalised to their schema first, as a command's are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catgad.errors import EventRuleFailed
from tests.handlers.conftest import tickets_yaml
from tests.handlers.servers import WebhookServer
from tests.handlers.test_plugins import engine_with, triage
from tests.helpers.api import PROBLEM_BASE, PROBLEM_JSON
from tests.helpers.daemon import Daemon

RULE = "aggregates.Ticket.on.TicketEscalated.set.escalation"


def escalated(level: Any) -> list[dict[str, Any]]:
    return [{"type": "TicketEscalated", "data": {"ticket_id": "t1", "level": level}}]


async def test_a_plugin_event_the_rules_cannot_apply_is_refused(tmp_path: Path) -> None:
    async with engine_with(tmp_path, lambda command, state: escalated(2)) as engine:
        with pytest.raises(EventRuleFailed) as caught:
            await triage(engine)
        problem = caught.value.problem()
        assert problem["status"] == 422
        assert (problem["rule"], problem["field"], problem["event"]) == (
            RULE,
            "escalation",
            "TicketEscalated",
        )
        assert "nothing was stored" in problem["detail"]
        assert await engine.store.stream_version("Ticket-t1") == 1
        _, loaded = await engine.aggregate_state("Ticket", "t1")
        assert loaded.state == {"status": "open", "title": "printer on fire"}


async def test_a_plugin_events_numbers_are_normalised_to_their_schema(tmp_path: Path) -> None:
    """priority is an integer: 3.0 passes the schema and is stored as 3, so a rule doing
    integer arithmetic on it later still works."""

    def fn(command: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "TicketTriaged", "data": {"ticket_id": "t1", "priority": 3.0}}]

    async with engine_with(tmp_path, fn) as engine:
        result = await triage(engine)
        stored = (await engine.store.read("Ticket-t1"))[-1]
        assert type(result.events[0].data["priority"]) is int
        assert type(stored.data["priority"]) is int


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, WebhookServer]]:
    workdir = tmp_path_factory.mktemp("unappliable")
    with WebhookServer.python_faults() as server:
        store = "{kind: sqlite, path: '${CATGAD_SQLITE_PATH}'}"
        config = tickets_yaml(workdir, server.url("/switch"), store=store)
        with Daemon(config, workdir) as running, running.client() as client:
            opened = client.post("/commands/OpenTicket", json={"ticket_id": "t1", "title": "x"})
            assert opened.status_code == 201, opened.text
            yield running, server


def test_a_webhook_event_the_rules_cannot_apply_is_a_422(
    daemon: tuple[Daemon, WebhookServer],
) -> None:
    running, server = daemon
    server.mode("bad:events-a-rule-cannot-apply")
    with running.client() as client:
        before = client.get("/streams/Ticket-t1").json()
        response = client.post("/commands/Triage", json={"ticket_id": "t1", "priority": 2})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        problem = response.json()
        assert problem["type"] == PROBLEM_BASE + "event-rule-failed"
        assert (problem["rule"], problem["field"]) == (RULE, "escalation")
        assert problem["detail"].startswith(
            f"Triage: its event TicketEscalated cannot be applied by {RULE} (field 'escalation')"
        )
        assert client.get("/streams/Ticket-t1").json() == before, "nothing may be stored"
        assert client.get("/aggregates/Ticket/t1").status_code == 200
        server.mode("ok")
        fine = client.post("/commands/Triage", json={"ticket_id": "t1", "priority": 2})
        assert fine.status_code == 200, fine.text
        assert fine.json()["version"] == before["version"] + 1
