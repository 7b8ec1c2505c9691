"""Webhook faults against a real server: slow, failing, refused, killed mid-request, rejecting.

Every failure leaves the stream as it was; 5xx, timeouts and broken
connections are retried, then reported as 503 naming the handler.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from helpers.daemon import free_port

from catgad.errors import CommandRejected, WebhookFailed

from .conftest import tickets
from .servers import WebhookServer


async def test_a_reply_is_appended(tmp_path: Path, faults: WebhookServer) -> None:
    async with tickets(tmp_path, faults.url("/triage")) as t:
        await t.open()
        result = await t.triage(priority=2)
        assert [(e.type, e.data) for e in result.events] == [
            ("TicketTriaged", {"ticket_id": "t1", "priority": 2, "by": "python"})
        ]
        assert result.version == 2
        _, loaded = await t.engine.aggregate_state("Ticket", "t1")
        assert loaded.state["priority"] == 2
    assert faults.stats()["verified"] == 1


async def test_a_4xx_with_an_error_is_a_rejection_with_its_reason(
    tmp_path: Path, faults: WebhookServer
) -> None:
    async with tickets(tmp_path, faults.url("/triage"), retries=3) as t:
        await t.open()
        with pytest.raises(CommandRejected) as caught:
            await t.triage(priority=0)
        assert caught.value.status == 409
        assert caught.value.reason == "priority 0 is not a priority"
        assert caught.value.problem()["handler"] == "triage"
        assert await t.store.stream_version("Ticket-t1") == 1
    assert faults.requests("/triage") == 1  # a rejection is an answer: not retried


async def test_5xx_is_retried_then_503_naming_the_handler(
    tmp_path: Path, faults: WebhookServer
) -> None:
    async with tickets(tmp_path, faults.url("/fail"), retries=2) as t:
        await t.open()
        with pytest.raises(WebhookFailed) as caught:
            await t.triage()
        problem = caught.value.problem()
        assert problem["status"] == 503 and problem["handler"] == "triage"
        assert problem["attempts"] == 3
        assert "answered 500" in problem["detail"] and "'triage'" in problem["detail"]
        assert await t.store.stream_version("Ticket-t1") == 1
    assert faults.requests("/fail") == 3
    ids = faults.stats()["ids"]
    assert len(set(ids)) == 1, "every attempt of one decision carries the same webhook-id"


async def test_a_slow_handler_times_out_and_is_retried(
    tmp_path: Path, faults: WebhookServer
) -> None:
    async with tickets(tmp_path, faults.url("/slow"), timeout=0.3, retries=1) as t:
        await t.open()
        started = time.monotonic()
        with pytest.raises(WebhookFailed) as caught:
            await t.triage()
        elapsed = time.monotonic() - started
        assert "no answer within 0.3s" in caught.value.detail
        assert 0.6 <= elapsed < 2.5, elapsed  # two attempts of 0.3s, not the server's 3s
        assert await t.store.stream_version("Ticket-t1") == 1
    assert faults.requests("/slow") == 2


async def test_a_refused_connection_is_retried_then_503(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/triage"  # nobody listens there
    async with tickets(tmp_path, url, retries=2) as t:
        await t.open()
        with pytest.raises(WebhookFailed) as caught:
            await t.triage()
        assert caught.value.attempts == 3
        assert "cannot connect" in caught.value.detail
        assert await t.store.stream_version("Ticket-t1") == 1


async def test_a_handler_killed_mid_request(tmp_path: Path) -> None:
    """The server reads the request, then its process is killed: the connection breaks,
    the retries find nobody listening, the command fails with 503 and appends nothing."""
    with WebhookServer.python_faults() as server:
        async with tickets(tmp_path, server.url("/hang"), retries=2, timeout=10) as t:
            await t.open()
            command = asyncio.create_task(t.triage())
            line = await asyncio.to_thread(server.wait_for_line, "HANG ")
            assert line.startswith("HANG msg_")
            server.kill()
            with pytest.raises(WebhookFailed) as caught:
                await asyncio.wait_for(command, 10)
            assert caught.value.attempts == 3
            assert (
                "broke mid-request" in caught.value.detail
                or "cannot connect" in caught.value.detail
            )
            assert await t.store.stream_version("Ticket-t1") == 1


async def test_backoff_grows_with_full_jitter(tmp_path: Path, faults: WebhookServer) -> None:
    from catgad.handlers.webhook import WebhookSettings

    settings = WebhookSettings(url="http://x", backoff_initial=0.1, backoff_max=0.5)
    assert [settings.backoff(n, lambda: 1.0) for n in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert settings.backoff(3, lambda: 0.0) == 0.0
    async with tickets(
        tmp_path, faults.url("/fail"), retries=3, backoff={"initial": 0.1, "max": 0.1}
    ) as t:
        await t.open()
        started = time.monotonic()
        with pytest.raises(WebhookFailed):
            await t.triage()
        assert time.monotonic() - started < 1.0  # three waits of at most 0.1s


async def test_a_retried_command_does_not_call_the_handler_again(
    tmp_path: Path, faults: WebhookServer
) -> None:
    async with tickets(tmp_path, faults.url("/triage")) as t:
        await t.open()
        first = await t.engine.execute("Triage", {"ticket_id": "t1"}, command_id="triage-1")
        again = await t.engine.execute("Triage", {"ticket_id": "t1"}, command_id="triage-1")
        assert again.duplicate and again.events == first.events
        assert faults.requests("/triage") == 1
        faults.kill()  # even with the handler gone, the retry gets its first result
        third = await t.engine.execute("Triage", {"ticket_id": "t1"}, command_id="triage-1")
        assert third.duplicate and third.version == 2


async def test_the_handler_sees_the_command_state_and_version(
    tmp_path: Path, faults: WebhookServer
) -> None:
    """What was POSTed: the CloudEvent, the state at the version the events append to."""
    from catgad.handlers.protocol import HandlerRequest
    from catgad.handlers.webhook import WebhookHandler

    async with tickets(tmp_path, faults.url("/triage")) as t:
        await t.open()
        handler = t.handlers["triage"]
        assert isinstance(handler, WebhookHandler)
        seen: list[HandlerRequest] = []
        original = handler.__call__

        class Spy:
            async def __call__(self, request: HandlerRequest) -> object:
                seen.append(request)
                return await original(request)

        t.engine.handlers = {"triage": Spy()}  # type: ignore[dict-item]
        await t.triage(priority=4)
        (request,) = seen
        assert request.version == 1 and request.state == {
            "status": "open",
            "title": "printer on fire",
        }
        body = request.body()
        assert body["command"]["type"] == "Triage" and body["command"]["subject"] == "Ticket-t1"
        assert body["command"]["data"] == {"ticket_id": "t1", "priority": 4}
        assert body["version"] == 1
