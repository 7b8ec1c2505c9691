"""Prometheus metrics of one runtime: commands by outcome, their latency, events appended.

Each Runtime has its own registry, so several runtimes in one process (tests,
`catgad bench`) never share counters. Label children are cached because
`.labels()` costs a lock and a tuple lookup on every call of the request path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from catgad.store.protocol import AppendResult

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# Commands run in well under a millisecond in memory and a few with fsync; tail to 10 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """The counters and histograms catgad exports at /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
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
