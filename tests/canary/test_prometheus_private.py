"""prometheus_client's private parts that a projection's delay histogram uses
(catgad.projections.metrics.observe_all: a live batch's delays counted first, then one
increment per bucket), and its public fallback.

Both must give the exposition that observing value by value gives; should a release
move `_upper_bounds`, `_buckets` or `_sum`, the first test fails here rather than the
histogram silently counting wrong."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from catgad.projections.metrics import LAG_BUCKETS, observe_all

# on bounds, between them, below the first, beyond the last finite one
VALUES = [0.0, 0.001, 0.0011, 0.003, 0.025, 0.2, 0.25, 0.9, 4.0, 60.0, 599.0, 600.0, 1e6, 0.004]


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("delay", "d", ["p"], buckets=LAG_BUCKETS, registry=registry)


def test_observe_all_counts_as_observing_one_by_one() -> None:
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    reference, counted = _histogram(one_by_one).labels("x"), _histogram(batched).labels("x")
    assert hasattr(counted, "_upper_bounds") and hasattr(counted, "_buckets")
    assert hasattr(counted, "_sum")
    for value in VALUES:
        reference.observe(value)
    observe_all(counted, VALUES[:5])
    observe_all(counted, VALUES[5:])
    assert _samples(batched) == _samples(one_by_one)
    assert _samples(batched)[("delay_count", (("p", "x"),))] == len(VALUES)


class _PublicOnly:
    """A histogram child offering only the public observe (a release that moved the rest)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def observe(self, value: float) -> None:
        self.inner.observe(value)


def test_without_the_private_parts_it_observes_value_by_value() -> None:
    one_by_one, fallback = CollectorRegistry(), CollectorRegistry()
    reference = _histogram(one_by_one).labels("x")
    for value in VALUES:
        reference.observe(value)
    observe_all(_PublicOnly(_histogram(fallback).labels("x")), VALUES)  # type: ignore[arg-type]
    assert _samples(fallback) == _samples(one_by_one)
