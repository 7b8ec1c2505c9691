"""The circuit breaker: opens after N failures, refuses at once while open, probes, closes.

Measured at the server: while the circuit is open no request reaches it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from catgad.errors import CircuitOpen, WebhookFailed
from catgad.handlers.circuit import CircuitBreaker
from tests.handlers.conftest import tickets
from tests.handlers.servers import WebhookServer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_n_consecutive_failures_and_probes_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker("h", failures=3, reset_after=10, clock=clock)
    for _ in range(2):
        breaker.admit()
        breaker.failed()
    breaker.admit()
    breaker.succeeded()  # a success resets the count: failures must be consecutive
    for _ in range(3):
        assert breaker.state == "closed"
        breaker.admit()
        breaker.failed()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as caught:
        breaker.admit()
    assert caught.value.retry_after == pytest.approx(10)
    assert caught.value.status == 503 and caught.value.problem()["handler"] == "h"
    clock.now += 10
    assert breaker.state == "half-open"
    breaker.admit()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.admit()  # only one probe at a time
    breaker.succeeded()
    assert breaker.state == "closed"
    breaker.admit()


def test_a_failed_probe_opens_again_for_a_full_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker("h", failures=1, reset_after=5, clock=clock)
    breaker.admit()
    breaker.failed()
    clock.now += 5
    breaker.admit()
    breaker.failed()
    assert breaker.state == "open"
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        breaker.admit()
    clock.now += 0.1
    breaker.admit()


def test_a_cancelled_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker("h", failures=1, reset_after=1, clock=clock)
    breaker.admit()
    breaker.failed()
    clock.now += 1
    breaker.admit()
    breaker.abandoned()
    breaker.admit()  # the next call probes instead
    breaker.succeeded()
    assert breaker.state == "closed"


async def test_open_circuit_answers_at_once_and_nothing_reaches_the_server(
    tmp_path: Path, faults: WebhookServer
) -> None:
    options = {"retries": 0, "circuit_breaker": {"failures": 3, "reset_after": 0.5}}
    async with tickets(tmp_path, faults.url("/switch"), **options) as t:
        await t.open()
        faults.mode("fail")
        for _ in range(3):
            with pytest.raises(WebhookFailed):
                await t.triage()
        assert faults.requests("/switch") == 3
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(CircuitOpen) as caught:
                await t.triage()
        assert time.monotonic() - started < 0.2  # answered at once, no network
        assert caught.value.problem()["type"].endswith("/handler-circuit-open")
        assert faults.requests("/switch") == 3, "no request may reach the server while open"

        await asyncio.sleep(0.55)  # half-open: one probe, which fails: open again
        with pytest.raises(WebhookFailed):
            await t.triage()
        assert faults.requests("/switch") == 4
        with pytest.raises(CircuitOpen):
            await t.triage()
        assert faults.requests("/switch") == 4

        faults.mode("ok")  # the handler recovers
        with pytest.raises(CircuitOpen):
            await t.triage()  # still open until the next probe is due
        await asyncio.sleep(0.55)
        result = await t.triage(priority=1)  # the probe succeeds: closed
        assert result.events[0].type == "TicketTriaged"
        for _ in range(3):
            await t.triage(priority=2)
        assert faults.requests("/switch") == 8
        assert await t.store.stream_version("Ticket-t1") == 5


async def test_retries_count_towards_opening(tmp_path: Path, faults: WebhookServer) -> None:
    """Each attempt counts: one command's retries open the circuit, the rest are not sent."""
    options = {"retries": 5, "circuit_breaker": {"failures": 2, "reset_after": 30}}
    async with tickets(tmp_path, faults.url("/fail"), **options) as t:
        await t.open()
        with pytest.raises(CircuitOpen):
            await t.triage()
        assert faults.requests("/fail") == 2
