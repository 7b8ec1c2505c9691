"""Prometheus metrics of one runtime: commands by outcome, their latency, events appended,
and each handler's calls, latency, retries and circuit.

Each Runtime has its own registry, so several runtimes in one process (tests,
`catgad bench`) never share counters. Label children are cached because
`.labels()` costs a lock and a tuple lookup on every call of the request path.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from catgad import __version__
from catgad.store.protocol import AppendResult

__all__ = ["CONTENT_TYPE_LATEST", "HandlerMetrics", "HandlerStats", "Metrics"]

# A `_created` sample per counter and histogram child doubles the series for a timestamp
# no dashboard reads; the switch is process-wide in prometheus_client.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Commands run in well under a millisecond in memory and a few with fsync; tail to 10 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


# A handler call is a plugin's microseconds or a webhook's milliseconds, and with retries
# after timeouts it may wait (retries + 1) x timeout: the tail reaches a minute.
HANDLER_BUCKETS = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
)  # fmt: skip
HANDLER_OUTCOMES = ("ok", "rejected", "failed", "malformed", "circuit_open")
CIRCUIT_STATES = ("closed", "half-open", "open")


class HandlerMetrics:
    """Per handler: calls by outcome, their latency, retries, the circuit breaker's state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "catgad_handler_calls",
            "Handler calls, by handler and outcome: ok, rejected (the handler refused the "
            "command: 409), failed (5xx, timeout, connection error after the retries, or a "
            "plugin that raised: 503/502), malformed (a reply breaking the protocol: 502), "
            "circuit_open (refused without calling: 503).",
            ["handler", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "catgad_handler_duration_seconds",
            "Time a command waited for its handler, retries and backoff included.",
            ["handler"],
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "catgad_handler_retries",
            "Webhook attempts after the first (5xx, 408, 429, timeouts, connection errors).",
            ["handler"],
            registry=registry,
        )
        self.circuit = Gauge(
            "catgad_handler_circuit_state",
            "A webhook's circuit breaker: 1 for its current state (closed, half-open, open), "
            "0 for the others; read when scraped.",
            ["handler", "state"],
            registry=registry,
        )

    def stats(self, handler: str) -> HandlerStats:
        return HandlerStats(self, handler)


class HandlerStats:
    """One handler's label children, looked up once: `.labels()` takes a lock per call."""

    __slots__ = ("_circuit", "_handler", "_outcomes", "_retries", "_seconds")

    def __init__(self, metrics: HandlerMetrics, handler: str) -> None:
        self._handler = handler
        self._circuit = metrics.circuit
        # every outcome from the start at 0, so a rate() sees the first failure
        self._outcomes = {o: metrics.calls.labels(handler, o) for o in HANDLER_OUTCOMES}
        self._seconds = metrics.seconds.labels(handler)
        self._retries = metrics.retries.labels(handler)

    def done(self, outcome: str, seconds: float) -> None:
        self._outcomes[outcome].inc()
        self._seconds.observe(seconds)

    def retried(self) -> None:
        self._retries.inc()

    def watch_circuit(self, state: Callable[[], str]) -> None:
        for name in CIRCUIT_STATES:
            self._circuit.labels(self._handler, name).set_function(
                lambda name=name: 1.0 if state() == name else 0.0  # type: ignore[misc]
            )


class Metrics:
    """The counters and histograms catgad exports at /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # process_* (CPU, memory, fds, start time) and python_info, as a default registry has
        self.registry.register(PROCESS_COLLECTOR)
        self.registry.register(PLATFORM_COLLECTOR)
        build = Gauge(
            "catgad_build_info",
            "Always 1; the labels tell which catgad and Python this process runs.",
            ["version", "python"],
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.commands = Counter(
            "catgad_commands",
            "Commands handled, by command type and outcome (ok, duplicate, or the error slug).",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.command_seconds = Histogram(
            "catgad_command_duration_seconds",
            "Time to handle a command, from validation to durable append.",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "catgad_events_appended",
            "Events appended to the store, by event type.",
            ["type"],
            registry=self.registry,
        )
        self._outcomes: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}
        self._event_types: dict[str, Counter] = {}

    def command_done(self, command: str, outcome: str, seconds: float) -> None:
        key = (command, outcome)
        counter = self._outcomes.get(key)
        if counter is None:
            counter = self._outcomes[key] = self.commands.labels(command, outcome)
        counter.inc()
        hist = self._latency.get(command)
        if hist is None:
            hist = self._latency[command] = self.command_seconds.labels(command)
        hist.observe(seconds)

    def appended(self, result: AppendResult) -> None:
        for event in result.events:
            counter = self._event_types.get(event.type)
            if counter is None:
                counter = self._event_types[event.type] = self.events.labels(event.type)
            counter.inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
