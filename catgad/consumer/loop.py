"""The loop every consumer of the store's log runs on, and the log reader built on it.

    loop = Loop("relay:orders", turn)        # turn(): one step of work, False when idle
    loop.start(); loop.notify(); await loop.stop()

`Loop` is what the outbox relay, the projections and the sagas share: it runs
its owner's turns until stopped; when a turn finds nothing to do it waits for
a wake-up (`notify`: an append in this process) or the next poll; a turn that
fails is retried after a backoff, from where it was, so nothing is skipped and
nothing reordered; `stop()` lets the turn in hand finish (bounded by
`stop_timeout`), `abort()` leaves everything as a `kill -9` would. Owners with
their own idea of idling or failing (a projection waits on its lease while
stopped; a circuit breaker says when to try again) pass `idle` and `failed`.

`LogReader` is the common owner: it reads `read_all` after its position, a
batch at a time, and hands each batch to a `Sink`, which says how many events
it handled (fewer means: stop this batch, its lease was lost or a stop came).

- With a lease (catgad.store.lease), it reads only while the lease is held;
  standing by, it follows the holder's checkpoint. With `checkpointed`, the
  position is the store checkpoint `name`: loaded on every gain of the lease
  (another daemon may have moved it) and saved after each handled batch, so a
  crash re-handles at most the unsaved tail (at-least-once; sinks deduplicate).
  Without, it starts from `start_at` (a rebuilt in-memory index starts at 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from catgad.envelope import Envelope
from catgad.observability.logs import get_logger
from catgad.store.lease import LeaseKeeper
from catgad.store.protocol import AppendResult, Coordination, EventStore

log = get_logger("catgad.reactors")


@dataclass(frozen=True, slots=True)
class LoopSettings:
    batch: int = 500  # events read and handled between two checkpoints
    poll_interval: float = 0.2  # seconds between looks for other processes' appends
    first_backoff: float = 0.05  # seconds before the first retry after a failure
    max_backoff: float = 5.0
    stop_timeout: float | None = 10.0  # seconds stop() waits for the turn in hand (None: all)
    linger: float = 0.0  # seconds a busy loop waits for more appends before its next turn
    linger_appends: int = 128  # ... or until this many appends (wake-ups) have come


class Loop:
    """Runs `turn` until stopped; see the module docstring."""

    def __init__(
        self,
        name: str,
        turn: Callable[[], Awaitable[bool]],
        settings: LoopSettings | None = None,
        *,
        idle: Callable[[], Awaitable[None]] | None = None,
        failed: Callable[[Exception, int], float] | None = None,
        recovered: Callable[[], None] | None = None,
        turned: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or LoopSettings()
        self._turn = turn
        self._idle = idle or self._poll
        self._failed = failed or self._log_failure
        self._recovered = recovered
        self._turned = turned  # after every turn, failed or not
        self.wake = asyncio.Event()
        self._woken = 0  # wake-ups (appends) since the last turn began
        self._enough = asyncio.Event()  # set at settings.linger_appends of them
        self.closing = asyncio.Event()  # set by stop() and abort()
        self.failing: str | None = None  # the error of the last turn, while retrying
        self.task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def stopping(self) -> bool:
        return self.closing.is_set()

    @property
    def started(self) -> bool:
        return self.task is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self) -> None:
        if self.task is None and not self._stopped:
            self.task = asyncio.create_task(self._main(), name=self.name)

    def notify(self) -> None:
        self.wake.set()
        self._woken += 1
        if self._woken == self.settings.linger_appends:
            self._enough.set()

    async def stop(self) -> None:
        """Finish the turn in hand (within stop_timeout), then end."""
        if self._stopped:
            return
        self._stopped = True
        self.closing.set()
        self.wake.set()
        task, self.task = self.task, None
        if task is None:
            return
        timeout = self.settings.stop_timeout
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("stopped before finishing its turn", loop=self.name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def abort(self) -> None:
        """End at once, as kill -9 would: nothing finished, saved or released."""
        self._stopped = True
        self.closing.set()
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds`, or less if asked to stop; True when stopping."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.closing.wait()
        return self.closing.is_set()

    def backoff(self, attempts: int) -> float:
        delay = self.settings.first_backoff * 2 ** min(attempts - 1, 30)
        return float(min(delay, self.settings.max_backoff))

    async def wait(self, seconds: float, *also: Awaitable[Any]) -> None:
        """Wait for a wake-up, any of `also`, or `seconds`; the wake-up is then cleared.

        A wake-up within `linger` of the last turn's end (or during it) means appends come
        faster than that: the loop then waits `linger` more before its next turn (less once
        `linger_appends` appends are waiting), so that the batch takes in what arrives
        meanwhile (under load, fewer and larger batches, each with its fixed cost: a read,
        a write, a checkpoint). A loop idle for longer than that reads at once: a lone
        append is not delayed.
        """
        linger = self.settings.linger
        if self.wake.is_set():  # came during the turn: nothing to wait for
            for other in also:  # not awaited: closed, or Python warns of a lost coroutine
                if asyncio.iscoroutine(other):
                    other.close()
            busy = True
        else:
            idle_from = time.monotonic()
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.wake.wait())]
            waits += [asyncio.ensure_future(other) for other in also]
            try:
                await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                # their cancellations come back as results; a CancelledError here is this
                # task's own, and must go on (suppressed, a cancel landing now was lost)
                await asyncio.gather(*waits, return_exceptions=True)
            busy = self.wake.is_set() and time.monotonic() - idle_from < linger
        if busy and linger > 0 and not self.closing.is_set():
            await self._linger(linger)
        elif busy:  # woken during the turn, no linger: still one step for the rest of the loop
            await asyncio.sleep(0)
        self.wake.clear()
        self._woken = 0
        self._enough.clear()

    async def _linger(self, seconds: float) -> None:
        """Wait `seconds`, or less once `linger_appends` appends are waiting: at a high rate
        the batch is full sooner, and waiting longer would only add lag."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._enough.wait()

    async def _poll(self) -> None:
        await self.wait(self.settings.poll_interval)

    def _log_failure(self, exc: Exception, failures: int) -> float:
        if failures == 1 or failures % 10 == 0:  # down for long: not a line per retry
            log.warning("cannot read or save; retrying", loop=self.name, error=self.failing)
        return self.backoff(failures)

    async def _main(self) -> None:
        failures = 0
        while not self.closing.is_set():
            try:
                progressed = await self._turn()
            except Exception as exc:  # the store or a target failed us: again, after a pause
                failures += 1
                self.failing = str(exc) or type(exc).__name__
                if self._turned is not None:
                    self._turned()
                await self.pause(self._failed(exc, failures))
                continue
            if self._turned is not None:
                self._turned()
            if failures:
                failures, self.failing = 0, None
                if self._recovered is not None:
                    self._recovered()
            if not progressed:
                await self._idle()


class Sink(Protocol):
    async def handle(self, events: list[Envelope]) -> int:
        """Handle events in order; how many were handled (fewer: stop this batch)."""
        ...


class LogReader:
    """Reads the log for one sink, on a Loop; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        sink: Sink,
        *,
        name: str,
        settings: LoopSettings | None = None,
        lease: LeaseKeeper | None = None,
        checkpointed: bool = False,
        start_at: int = 0,
        on_active: Callable[[int], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        unheard: Callable[[], bool] | None = None,
    ) -> None:
        # checked once: isinstance on a Protocol walks its members on every call
        coordination = store if isinstance(store, Coordination) else None
        if checkpointed and coordination is None:
            raise TypeError(f"{name}: a checkpointed reader needs a store with checkpoints")
        self.store = store
        self._coordination = coordination
        self.sink = sink
        self.name = name
        self.lease = lease
        self.checkpointed = checkpointed
        self.position = start_at  # handled up to here (saved, when checkpointed)
        self.head = start_at  # the highest position this process knows of
        self.loop = Loop(name, self._turn, settings)
        self.settings = self.loop.settings
        self._on_active = on_active
        self._on_idle = on_idle  # called when a read finds nothing new: caught up
        # True: nothing would take the events. What this process appended is then passed over
        # unread (its positions are known); others' appends are read only to move past them.
        self._unheard = unheard
        self._active = False  # holding the lease, position loaded
        self._moved = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self.loop.stopping

    @property
    def started(self) -> bool:
        return self.loop.started

    @property
    def stopped(self) -> bool:
        return self.loop.stopped

    @property
    def failing(self) -> str | None:
        return self.loop.failing

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)

    def start(self) -> None:
        if not self.loop.started and not self.loop.stopped and self.lease is not None:
            self.lease.start()
        self.loop.start()

    def notify(self, appended: AppendResult | None = None) -> None:
        """Something was appended in this process (`appended`, when known): look now."""
        if appended is not None and appended.events:
            self.head = max(self.head, appended.events[-1].position or 0)
        self.loop.notify()

    async def stop(self) -> None:
        """Finish the batch in hand, save the checkpoint, release the lease."""
        if self.loop.stopped:
            return
        if self.lease is not None:
            self.lease.nudge()  # a standby waiting for the lease looks up
        await self.loop.stop()
        if self.lease is not None:
            await self.lease.stop(release=True)

    def abort(self) -> None:
        self.loop.abort()
        if self.lease is not None:
            self.lease.abandon()

    async def pause(self, seconds: float) -> bool:
        return await self.loop.pause(seconds)

    def backoff(self, attempts: int) -> float:
        return self.loop.backoff(attempts)

    async def reached(self, position: int) -> None:
        """Return once everything up to `position` is handled."""
        while self.position < position:
            self._moved.clear()
            await self._moved.wait()

    async def _turn(self) -> bool:
        lease = self.lease
        seen = lease.changes if lease is not None else 0  # a change while loading wakes us
        if lease is not None and not lease.held():
            if self._active:
                log.warning("lost its lease: stopped consuming", loop=self.name)
            self._active = False
            if self.checkpointed:
                self.position = await self._load()  # the holder's progress
            await lease.wait_change(lease.period, since=seen)
            return True
        if not self._active:
            if self.checkpointed:
                self.position = await self._load()
            self._active = True
            if self._on_active is not None:
                self._on_active(self.position)
        self.loop.wake.clear()  # an append from here on wakes the idle wait that may follow
        unheard = self._unheard is not None and self._unheard()
        if unheard and self.head > self.position:  # this process's appends: no read needed
            await self._moved_to(self.head)
            return False
        events = await self.store.read_all(after=self.position, limit=self.settings.batch)
        if not events:
            if self._on_idle is not None:
                self._on_idle()
            return False
        self.head = max(self.head, events[-1].position or 0)
        done = len(events) if unheard else await self.sink.handle(events)
        if done:
            await self._moved_to(events[done - 1].position or self.position)
        if done < len(events):
            self._active = False  # lease lost or stopping: reload before reading on
        return True

    async def _moved_to(self, position: int) -> None:
        if self.checkpointed:
            assert self._coordination is not None
            await self._coordination.save_checkpoint(self.name, position)
        self.position = max(self.position, position)
        self._moved.set()

    async def _load(self) -> int:
        assert self._coordination is not None
        return await self._coordination.load_checkpoint(self.name)
