"""The bad-reply corpus through a real daemon: each reply gives its problem; the stream stays.

Each tests/handlers/bad_replies/NN-name.json holds what the webhook answers
(`reply`: status, raw text or JSON, headers) and the problem the client must
get (`expect`: status, type, handler, exact detail or its start).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.handlers.conftest import tickets_yaml
from tests.handlers.servers import CORPUS, WebhookServer
from tests.helpers.api import PROBLEM_BASE, PROBLEM_JSON
from tests.helpers.daemon import Daemon

CASES = sorted(CORPUS.glob("[0-9][0-9]-*.json"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, WebhookServer]]:
    workdir = tmp_path_factory.mktemp("bad-replies")
    with WebhookServer.python_faults() as server:
        config = tickets_yaml(
            workdir, server.url("/switch"), store="{kind: sqlite, path: '${CATGAD_SQLITE_PATH}'}",
            retries=2,
        )  # fmt: skip
        with Daemon(config, workdir) as daemon, daemon.client() as client:
            opened = client.post("/commands/OpenTicket", json={"ticket_id": "t1", "title": "x"})
            assert opened.status_code == 201, opened.text
            yield daemon, server


def test_the_corpus_is_complete() -> None:
    assert len(CASES) >= 20
    for case in CASES:
        expect = json.loads(case.read_text())["expect"]
        assert {"status", "type", "handler"} <= set(expect), case.name
        assert ("detail" in expect) != ("detail_starts" in expect), case.name


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_bad_reply(case: Path, service: tuple[Daemon, WebhookServer]) -> None:
    daemon, server = service
    spec: dict[str, Any] = json.loads(case.read_text())
    expect = spec["expect"]
    server.mode(f"bad:{case.stem}")
    with daemon.client() as client:
        before = client.get("/streams/Ticket-t1").json()
        sent = server.requests("/switch")
        response = client.post("/commands/Triage", json={"ticket_id": "t1", "priority": 2})
        assert response.status_code == expect["status"], response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        problem = response.json()
        assert problem["type"] == PROBLEM_BASE + expect["type"]
        assert problem["handler"] == expect["handler"]
        if "detail" in expect:
            assert problem["detail"] == expect["detail"]
        else:
            assert problem["detail"].startswith(expect["detail_starts"]), problem["detail"]
        assert "Traceback" not in response.text
        assert client.get("/streams/Ticket-t1").json() == before, "the stream must not change"
    assert server.requests("/switch") == sent + 1, "a bad reply is an answer: not retried"


def test_a_good_reply_after_the_bad_ones_appends(service: tuple[Daemon, WebhookServer]) -> None:
    daemon, server = service
    server.mode("ok")
    with httpx.Client(base_url=daemon.url, timeout=10) as client:
        version = client.get("/streams/Ticket-t1").json()["version"]
        response = client.post("/commands/Triage", json={"ticket_id": "t1", "priority": 3})
        assert response.status_code == 200, response.text
        assert response.json()["version"] == version + 1
