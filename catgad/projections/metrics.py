"""Prometheus metrics of projections: events applied, how stale they were, lag, dead letters."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from catgad.envelope import Envelope
from catgad.projections.progress import age_seconds
from catgad.projections.records import event_times

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
            observe_all(
                self.delay.labels(projection), [age_seconds(t, now) for t in event_times(events)]
            )

    def lag(self, projection: str, events: int) -> None:
        self.lag_events.labels(projection).set(events)

    def dead_lettered(self, projection: str, count: int) -> None:
        self.dead.labels(projection).inc(count)


def observe_all(histogram: Histogram, values: Iterable[float]) -> None:
    """`histogram.observe` of every value, as one increment per bucket and one of the sum.

    prometheus_client observes one value at a time, taking a lock for the sum and one
    for its bucket: two locked increments per event of a live batch. This counts the
    batch first, through the histogram's private parts (tests/canary checks them), and
    falls back to observing value by value where a release moved them."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    summed = 0.0
    for value in values:
        summed += value
        counts[bisect_left(bounds, value)] += 1  # the first bucket whose bound is >= value
    total.inc(summed)
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
