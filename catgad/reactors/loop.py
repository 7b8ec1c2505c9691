"""The one loop that consumes the store's log: read in order, hand each batch to a sink, wait.

    loop = LogLoop(store, sink, name="relay:orders", lease=keeper, checkpointed=True)
    loop.start(); loop.notify(); await loop.stop()

- It reads `read_all` after its position, a batch at a time, and gives the
  batch to the sink, which says how many events it handled (in order; fewer
  means "stop this batch": its lease was lost, or a stop came while it waited).
- With a lease (catgad.store.lease), it reads only while the lease is held;
  standing by, it follows the holder's checkpoint. With `checkpointed`, the
  position is the store checkpoint `name`: loaded on every gain of the lease
  (another daemon may have moved it) and saved after each handled batch, so a
  crash re-handles at most the unsaved tail (at-least-once; sinks deduplicate).
  Without, it starts from `start_at` (a rebuilt in-memory index starts at 0).
- Appends in this process wake it at once (`notify`); those of other
  processes are found by polling every `poll_interval`.
- A failing read, sink or save is retried with exponential backoff, from the
  same position: nothing is skipped, nothing reordered.
- `stop()` lets the batch in hand finish (bounded by `stop_timeout`), saves
  its checkpoint and releases the lease; `abort()` leaves everything as a
  `kill -9` would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from catgad.envelope import Envelope
from catgad.observability.logs import get_logger
from catgad.store.lease import LeaseKeeper
from catgad.store.protocol import Coordination, EventStore

log = get_logger("catgad.reactors")


class Sink(Protocol):
    async def handle(self, events: list[Envelope]) -> int:
        """Handle events in order; how many were handled (fewer: stop this batch)."""
        ...


@dataclass(frozen=True, slots=True)
class LoopSettings:
    batch: int = 500  # events read and handled between two checkpoints
    poll_interval: float = 0.2  # seconds between looks for other processes' appends
    first_backoff: float = 0.05  # seconds before the first retry after a failure
    max_backoff: float = 5.0
    stop_timeout: float = 10.0  # seconds stop() waits for the batch in hand


class LogLoop:
    """Consumes the log for one sink; see the module docstring."""

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
    ) -> None:
        if checkpointed and not isinstance(store, Coordination):
            raise TypeError(f"{name}: a checkpointed loop needs a store with checkpoints")
        self.store = store
        self.sink = sink
        self.name = name
        self.settings = settings or LoopSettings()
        self.lease = lease
        self.checkpointed = checkpointed
        self.position = start_at  # handled up to here (saved, when checkpointed)
        self.head = start_at  # the highest position this process knows of
        self.failing: str | None = None  # the error of the last turn, while retrying
        self._on_active = on_active
        self._on_idle = on_idle  # called when a read finds nothing new: caught up
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._moved = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def started(self) -> bool:
        return self._task is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and not self._stopped:
            if self.lease is not None:
                self.lease.start()
            self._task = asyncio.create_task(self._main(), name=self.name)

    def notify(self, position: int | None = None) -> None:
        """Something was appended in this process (up to `position`): look now."""
        if position is not None:
            self.head = max(self.head, position)
        self._wake.set()

    async def stop(self) -> None:
        """Finish the batch in hand, save the checkpoint, release the lease."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._wake.set()
        if self.lease is not None:
            self.lease.nudge()
        task, self._task = self._task, None
        if task is not None:
            try:
                async with asyncio.timeout(self.settings.stop_timeout):
                    await asyncio.shield(task)
            except TimeoutError:
                log.warning("stopped before finishing its batch", loop=self.name)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.lease is not None:
            await self.lease.stop(release=True)

    def abort(self) -> None:
        """Stop at once: no checkpoint saved, no lease released, as kill -9 leaves it."""
        self._stopped = True
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.lease is not None:
            self.lease.abandon()

    async def pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if asked to stop (for sinks retrying inside a batch)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def backoff(self, attempts: int) -> float:
        delay = self.settings.first_backoff * 2 ** min(attempts - 1, 30)
        return float(min(delay, self.settings.max_backoff))

    async def reached(self, position: int) -> None:
        """Return once everything up to `position` is handled."""
        while self.position < position:
            self._moved.clear()
            await self._moved.wait()

    # -- the work -------------------------------------------------------------------------------

    async def _main(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self.lease is not None and not self.lease.held():
                    await self._stand_by(self.lease)
                else:
                    await self._consume()
                failures = 0
                self.failing = None
            except Exception as exc:  # the store failed us: look again after a pause
                failures += 1
                self.failing = str(exc) or type(exc).__name__
                if failures == 1 or failures % 10 == 0:
                    log.warning("cannot read or save; retrying", loop=self.name, error=self.failing)
                await self.pause(self.backoff(failures))

    async def _stand_by(self, lease: LeaseKeeper) -> None:
        if self.checkpointed:
            self.position = await self._load()  # the holder's progress
        await lease.wait_change(lease.period)

    async def _consume(self) -> None:
        position = self.position = await self._load() if self.checkpointed else self.position
        if self._on_active is not None:
            self._on_active(position)
        while not self._stopping.is_set():
            if self.lease is not None and not self.lease.held():
                log.warning("lost its lease: stopped consuming", loop=self.name)
                return
            self._wake.clear()
            events = await self.store.read_all(after=position, limit=self.settings.batch)
            if not events:
                if self._on_idle is not None:
                    self._on_idle()
                await self._idle()
                continue
            self.head = max(self.head, events[-1].position or 0)
            done = await self.sink.handle(events)
            if done:
                position = events[done - 1].position or position
                if self.checkpointed:
                    assert isinstance(self.store, Coordination)
                    await self.store.save_checkpoint(self.name, position)
                self.position = max(self.position, position)
                self._moved.set()
            if done < len(events):
                return

    async def _load(self) -> int:
        assert isinstance(self.store, Coordination)
        return await self.store.load_checkpoint(self.name)

    async def _idle(self) -> None:
        """Wait for an append in this process, a stop, or the next poll."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.poll_interval):
                await self._wake.wait()
