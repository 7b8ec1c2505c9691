"""Prometheus metrics of sagas: how many started and how they ended, step latency, running."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("started", "completed", "compensated", "failed")


class SagaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.instances = Counter(
            "catgad_saga_instances",
            "Saga instances by saga and outcome: started, completed, compensated, failed "
            "(a compensation exhausted its retries).",
            ["saga", "outcome"],
            registry=registry,
        )
        self.step_seconds = Histogram(
            "catgad_saga_step_seconds",
            "Time from sending a step's (or a compensation's) command to its answer.",
            ["saga", "step"],
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
        )
        self.ignored = Counter(
            "catgad_saga_events_ignored",
            "Awaited event types that answered no running instance.",
            ["saga", "event"],
            registry=registry,
        )
        self._gauge = Gauge(
            "catgad_saga_running",
            "Instances not finished (running, compensating or failed), per saga and status.",
            ["saga", "status"],
            registry=registry,
        )

    def outcome(self, saga: str, outcome: str) -> None:
        self.instances.labels(saga, outcome).inc()

    def refresh(self, counts: dict[tuple[str, str], int]) -> None:
        for (saga, status), count in counts.items():
            self._gauge.labels(saga, status).set(count)
