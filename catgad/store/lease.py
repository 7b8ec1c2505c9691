"""Keeping a Coordination lease: take it when free, renew it every ttl/3, know when it is lost.

Whether the lease is held is decided here, locally, and conservatively: until
`ttl` after the *start* of the request that last took or renewed it. The
store set its expiry to its own now + ttl, which came later, so while
`held()` is true no other daemon can have the lease (clocks tick at the same
rate; they need not agree). A renewal that fails or hangs changes nothing
until that deadline passes, and then `held()` turns false by itself: the
holder stops before its successor can start.

`Sharing` spreads the leases of one daemon's workers (`catgad run --workers N`)
over them: each worker asks at once for its share and waits one renewal period
before asking for the others', so at startup each worker takes its own and the
background work (projections, relay, sagas, processes) is not all in the
worker that happened to ask first. A lease whose worker never takes it (gone,
or slow to start) goes to another after that wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import structlog

from catgad.store.protocol import Coordination

log = structlog.get_logger(__name__)


class Sharing:
    """Which leases worker `number` of `count` asks for first; see the module docstring."""

    def __init__(self, number: int, count: int) -> None:
        if not 0 <= number < count:
            raise ValueError(f"worker {number} of {count}")
        self.number = number
        self.count = count
        self._own: frozenset[str] | None = None  # None: not dealt yet, every lease is ours

    def deal(self, names: Iterable[str]) -> None:
        """Deal every lease name of the config (the same in every worker) round-robin."""
        ordered = sorted(set(names))
        self._own = frozenset(ordered[self.number :: self.count])

    def owns(self, name: str) -> bool:
        return self._own is None or name in self._own


class LeaseKeeper:
    """One owner's hold on one named lease, kept by a background task between start() and stop()."""

    def __init__(
        self,
        store: Coordination,
        name: str,
        owner: str,
        ttl: float,
        *,
        sharing: Sharing | None = None,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"a lease ttl must be positive, not {ttl!r}")
        self.store = store
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self.period = ttl / 3  # renewals per ttl: two may fail before the lease lapses
        self.sharing = sharing
        self.holder: str | None = None  # who held it at the last attempt, as far as we know
        self.error: str | None = None  # why the last attempt failed, if it did
        self._until = 0.0  # time.monotonic() until which the lease is ours
        # every waiter of wait_change wakes on the next change: an event per change, never
        # cleared by one waiter under another; `changes` counts them, for `since`
        self._changed = asyncio.Event()
        self.changes = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def held(self) -> bool:
        return time.monotonic() < self._until

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name=f"lease:{self.name}")

    async def stop(self, *, release: bool = True) -> None:
        """Stop renewing and, with `release`, give the lease up so a successor need not wait."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        was_held = self.held()
        self._until = 0.0
        if release:
            try:
                await self.store.release_lease(self.name, self.owner)
            except Exception as exc:  # it expires by itself; the successor waits ttl longer
                log.warning("could not release a lease", lease=self.name, error=str(exc))
            else:
                if was_held:
                    log.info("lease released", lease=self.name, owner=self.owner)
        self._signal()

    def abandon(self) -> None:
        """Stop at once without releasing, as a killed process would (tests)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._until = 0.0
        self._signal()

    def nudge(self) -> None:
        """Wake whoever waits in wait_change, to look at something else (a stop)."""
        self._signal()

    async def wait_change(self, at_most: float, since: int | None = None) -> None:
        """Return when the lease was gained or lost, or after `at_most` seconds; at once if it
        changed after `since` (a `changes` read before the caller looked at `held()`)."""
        if since is not None and since != self.changes:
            return
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await changed.wait()

    def _signal(self) -> None:
        self.changes += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _keep(self) -> None:
        if self.sharing is not None and not self.sharing.owns(self.name):
            await self._pause(self.period)  # another worker's share: let it ask first
        while not self._stopping.is_set():
            await self._attempt()
            await self._pause(self.period)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _attempt(self) -> None:
        was_held = self.held()
        asked = time.monotonic()
        try:
            won = await self.store.acquire_lease(self.name, self.owner, self.ttl)
            holder = self.owner if won else await self.store.lease_owner(self.name)
        except Exception as exc:  # keep the deadline we had: it runs out by itself
            if self.error is None:
                log.warning("lease renewal failed", lease=self.name, error=str(exc))
            self.error = str(exc) or type(exc).__name__
        else:
            self.error = None
            self.holder = holder
            self._until = asked + self.ttl if won else 0.0
        if self.held() != was_held:
            if was_held:
                log.warning("lease lost", lease=self.name, owner=self.owner, holder=self.holder)
            else:
                log.info("lease taken", lease=self.name, owner=self.owner)
            self._signal()
