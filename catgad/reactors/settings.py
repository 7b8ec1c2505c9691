"""`runtime.sagas` / `runtime.processes`: how daemons sharing a store hand a reactor over."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LeasedSettings:
    lease_ttl: float = 10.0  # seconds; a dead driver's instances move within ~4/3 of it
    poll_interval: float = 0.2  # seconds between looks at the store for others' appends
