"""Webhook faults against a real server: slow, failing, refused, killed mid-request, rejecting.

Every failure leaves the stream as it was; 5xx, timeouts and broken
connections are retried, then reported as 503 naming the handler.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from catgad.errors import CommandRejected, WebhookFailed
from tests.handlers.conftest import tickets
from tests.handlers.servers import WebhookServer
from tests.support.ports import free_port


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


async def test_the_timeout_bounds_the_whole_attempt_not_each_read(
    tmp_path: Path, faults: WebhookServer
) -> None:
    """/trickle sends its reply a byte every 50 ms: no read waits long, the whole reply takes
    seconds. A timeout per phase (connect, write, each read) never fires on it; the
    webhook's `timeout` is for the whole attempt, so the call is cut at 0.5s."""
    async with tickets(tmp_path, faults.url("/trickle"), timeout=0.5, retries=0) as t:
        await t.open()
        started = time.monotonic()
        with pytest.raises(WebhookFailed) as caught:
            await t.triage()
        elapsed = time.monotonic() - started
        assert "no answer within 0.5s" in caught.value.detail
        assert 0.5 <= elapsed < 2.0, elapsed
        assert await t.store.stream_version("Ticket-t1") == 1
    assert faults.requests("/trickle") == 1


def test_the_timeout_under_uvloop(tmp_path: Path, faults: WebhookServer) -> None:
    """`catgad run` runs on uvloop: the same cut there, and the next call answered."""
    if sys.platform == "win32":
        pytest.skip("uvloop does not run on Windows (catgad depends on it elsewhere)")
    import uvloop

    async def scenario() -> float:
        async with tickets(tmp_path, faults.url("/trickle"), timeout=0.5, retries=0) as t:
            await t.open()
            started = time.monotonic()
            with pytest.raises(WebhookFailed) as caught:
                await t.triage()
            assert "no answer within 0.5s" in caught.value.detail
            return time.monotonic() - started

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        elapsed = runner.run(scenario())
    assert 0.5 <= elapsed < 2.0, elapsed


async def test_a_trickling_reply_that_ends_in_time_is_read(tmp_path: Path) -> None:
    """The same endpoint, trickling fast enough to end within the timeout: answered, so the
    cut above is the timeout's doing and not a broken reply."""
    with WebhookServer.python_faults(trickle=0.002) as server:
        async with tickets(tmp_path, server.url("/trickle"), timeout=10, retries=0) as t:
            await t.open()
            result = await t.triage(priority=5)
            assert result.events[0].data == {"ticket_id": "t1", "priority": 5, "by": "python"}


async def test_timeouts_with_retries_end_within_the_documented_bound(
    tmp_path: Path, faults: WebhookServer
) -> None:
    from catgad.handlers.webhook import WebhookHandler

    options = {"timeout": 0.3, "retries": 2, "backoff": {"initial": 0.05, "max": 0.1}}
    async with tickets(tmp_path, faults.url("/trickle"), **options) as t:
        await t.open()
        handler = t.handlers["triage"]
        assert isinstance(handler, WebhookHandler)
        bound = handler.settings.worst_case()
        assert bound == pytest.approx(3 * 0.3 + 0.05 + 0.1)
        started = time.monotonic()
        with pytest.raises(WebhookFailed) as caught:
            await t.triage()
        elapsed = time.monotonic() - started
        assert caught.value.attempts == 3
        assert 3 * 0.3 <= elapsed < bound + 0.5, (elapsed, bound)  # 0.5s: a loaded machine
    assert faults.requests("/trickle") == 3


async def test_a_cancelled_call_is_cancelled_not_timed_out(
    tmp_path: Path, faults: WebhookServer
) -> None:
    """Cancelling the command mid-request (shutdown, a client gone) propagates as such: not a
    timeout, not retried, and the handler keeps nothing of it."""
    from catgad.handlers.webhook import WebhookHandler

    async with tickets(tmp_path, faults.url("/trickle"), timeout=10, retries=2) as t:
        await t.open()
        handler = t.handlers["triage"]
        assert isinstance(handler, WebhookHandler)
        command = asyncio.create_task(t.triage())
        await asyncio.to_thread(faults.wait_for_requests, "/trickle", 1)
        command.cancel()
        with pytest.raises(asyncio.CancelledError):
            await command
        assert handler._deadlines.watching == 0
        assert handler.breaker.state == "closed"
        assert await t.store.stream_version("Ticket-t1") == 1
        assert faults.requests("/trickle") == 1


async def test_one_timer_cuts_each_attempt_at_its_own_deadline() -> None:
    """Deadlines shares one timer among a handler's attempts: staggered attempts are each
    cancelled at their own deadline, and one that ends in time is left alone."""
    from catgad.handlers.webhook import Deadlines

    deadlines = Deadlines(0.3)
    loop = asyncio.get_running_loop()
    ended: dict[str, tuple[str, float]] = {}
    second_started = asyncio.Event()

    async def attempt(name: str, work: asyncio.Future[None]) -> None:
        task = deadlines.start()
        started = loop.time()
        timed_out = False
        try:
            try:
                if name == "slow-2":
                    second_started.set()
                await work
            finally:
                timed_out = deadlines.finish(task)
        except asyncio.CancelledError:
            if not timed_out:
                raise
            ended[name] = ("timed out", loop.time() - started)
            return
        ended[name] = ("done", loop.time() - started)

    never: list[asyncio.Future[None]] = [loop.create_future() for _ in range(2)]
    soon: asyncio.Future[None] = loop.create_future()
    first = asyncio.create_task(attempt("slow-1", never[0]))
    fast = asyncio.create_task(attempt("fast", soon))
    await asyncio.sleep(0.1)  # not a wait for a condition: the second attempt starts later
    second = asyncio.create_task(attempt("slow-2", never[1]))
    await second_started.wait()
    soon.set_result(None)
    await asyncio.wait_for(asyncio.gather(first, fast, second), 5)  # fails, not hangs
    assert ended["fast"][0] == "done"
    for name in ("slow-1", "slow-2"):
        outcome, took = ended[name]
        assert outcome == "timed out" and 0.3 <= took < 0.6, (name, ended)
    assert deadlines.watching == 0


async def test_a_kept_alive_connection_closed_by_the_server_is_not_reused(
    tmp_path: Path,
) -> None:
    """The server restarts between two commands (same port): its old connection, idle in the
    pool, was closed under it. The next command must go out on a new connection at the
    first attempt (no retries allowed here), not fail writing to the dead one."""
    import sys

    from catgad.handlers.transport import ClientPool
    from tests.handlers.servers import CORPUS, HERE, SECRET

    port = free_port()
    argv = [sys.executable, str(HERE / "fault_server.py"), "--port", str(port)]
    argv += ["--secret", SECRET, "--corpus", str(CORPUS)]
    shards = ClientPool.SHARDS  # requests take the pools in turn: one connection in each
    first = WebhookServer(argv).start()
    try:
        async with tickets(tmp_path, first.url("/triage"), retries=0) as t:
            await t.open()
            for n in range(shards):
                assert (await t.triage(priority=1)).version == 2 + n
            first.stop()
            with WebhookServer(argv) as second:
                for n in range(shards):
                    assert (await t.triage(priority=2)).version == 2 + shards + n
                assert second.requests("/triage") == shards
    finally:
        first.stop()


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
