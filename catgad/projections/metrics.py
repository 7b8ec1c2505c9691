"""Prometheus metrics of projections: events applied, how stale they were, lag, dead letters."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from catgad.envelope import Envelope
from catgad.projections.progress import age_seconds

# From append to read model: milliseconds when live, minutes during a catch-up.
LAG_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
)  # fmt: skip


class ProjectionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "catgad_projection_events",
            "Events consumed by a projection (applied, skipped or dead-lettered), live or "
            "rebuilding.",
            ["projection", "mode"],
            registry=registry,
        )
        self.delay = Histogram(
            "catgad_projection_delay_seconds",
            "Time from an event's `time` to its application by a projection (live only).",
            ["projection"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.lag_events = Gauge(
            "catgad_projection_lag_events",
            "Events between a projection's checkpoint and the head of the store, when last seen.",
            ["projection"],
            registry=registry,
        )
        self.dead = Counter(
            "catgad_projection_dead_letters",
            "Events a projection could not apply and recorded as dead letters.",
            ["projection"],
            registry=registry,
        )

    def applied(self, projection: str, events: Sequence[Envelope], *, live: bool) -> None:
        if not events:
            return
        self.events.labels(projection, "live" if live else "rebuild").inc(len(events))
        if live:
            now = time.time()
            histogram = self.delay.labels(projection)
            for event in events:
                histogram.observe(age_seconds(event.time, now))

    def lag(self, projection: str, events: int) -> None:
        self.lag_events.labels(projection).set(events)

    def dead_lettered(self, projection: str, count: int) -> None:
        self.dead.labels(projection).inc(count)
