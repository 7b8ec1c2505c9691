"""A circuit breaker: stop calling a failing handler, let one probe through now and then.

    closed ──N failures in a row──▶ open ──reset_after elapsed──▶ half-open
       ▲                              ▲                              │
       └──────── probe succeeded ─────┼──────── probe failed ────────┘

While open every call is refused at once (CircuitOpen, 503) without touching
the handler; in half-open exactly one call, the probe, goes through and the
others are refused until it has answered. Each attempt counts, retries
included, so a handler that keeps failing opens the circuit within one
command's retries rather than after N whole commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from catgad.errors import CircuitOpen
from catgad.observability.logs import get_logger

log = get_logger("catgad.handlers")

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Per handler; all calls run on one event loop, so no lock is needed."""

    def __init__(
        self,
        handler: str,
        *,
        failures: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.threshold = max(1, failures)
        self.reset_after = reset_after
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> State:
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_after:
            return "half-open"
        return self._state

    def admit(self) -> None:
        """Let a call through, or raise CircuitOpen. A call admitted here must end in
        succeeded(), failed() or abandoned()."""
        if self._state == "closed":
            return
        wait = self._opened_at + self.reset_after - self._clock()
        if wait > 0 or self._probing:
            raise CircuitOpen(self.handler, max(wait, 0.0))
        self._state = "half-open"
        self._probing = True
        log.info("circuit half-open: probing", handler=self.handler)

    def succeeded(self) -> None:
        if self._state != "closed":
            log.info("circuit closed: the handler answered", handler=self.handler)
        self._state = "closed"
        self._failures = 0
        self._probing = False

    def failed(self) -> None:
        if self._state == "half-open":
            self._open("the probe failed")
        elif self._state == "closed":
            self._failures += 1
            if self._failures >= self.threshold:
                self._open(f"{self._failures} failures in a row")

    def abandoned(self) -> None:
        """The admitted call was cancelled before it could tell: free the probe slot."""
        if self._state == "half-open" and self._probing:
            self._probing = False
            self._state = "open"  # still due: the next call probes

    def _open(self, why: str) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probing = False
        self._failures = 0
        log.warning(
            "circuit open: not calling the handler",
            handler=self.handler,
            why=why,
            reset_after=self.reset_after,
        )
