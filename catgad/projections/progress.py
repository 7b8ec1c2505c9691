"""How far behind the head of the store a projection is: in events, in seconds, and its rate.

The store protocol has no `head()`; positions are gapless on the stores that
promise GAPLESS_GLOBAL_ORDER, so the head is found by galloping with
`read_all(after=p, limit=1)` from a position known to exist (a hint): one
read when nothing was appended since, about 2·log2(distance) otherwise.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime

from catgad.store.protocol import EventStore


async def head_position(store: EventStore, hint: int = 0) -> int:
    """The position of the newest event (0 for an empty store); `hint` must exist or be 0."""
    low = hint  # known to exist (or 0)
    step = 1
    while True:
        found = await store.read_all(after=low + step - 1, limit=1)
        if not found:
            break
        low = found[0].position or low + step
        step *= 2
    high = low + step  # nothing after high - 1
    while high - low > 1:  # invariant: low exists (or is 0), nothing after high - 1
        middle = (low + high) // 2
        found = await store.read_all(after=middle - 1, limit=1)
        if found:
            low = max(found[0].position or middle, low)
            if low >= high:
                break
        else:
            high = middle
    return low


def age_seconds(event_time: str, now: float | None = None) -> float:
    """Seconds since an event's `time` (0 when it is unreadable or in the future)."""
    try:
        stamp = datetime.fromisoformat(event_time).timestamp()
    except ValueError:
        return 0.0
    return max(0.0, (time.time() if now is None else now) - stamp)


class Rate:
    """Events per second over the last `window` seconds, from (time, position) samples."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, position: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, position))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.popleft()

    def per_second(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, p0), (t1, p1) = self._samples[0], self._samples[-1]
        return (p1 - p0) / (t1 - t0) if t1 > t0 else 0.0

    def reset(self) -> None:
        self._samples.clear()
