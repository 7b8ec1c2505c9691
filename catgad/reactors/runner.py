"""What the saga and process runners share: a runtime component that follows the log into an
index (every daemon), drives each definition's instances while holding its lease (one daemon
at a time), fires what falls due, and appends its decisions at the version it read them at.

A runner subclasses ReactorRunner and gives `handle` (the log follower's sink),
`_leading_changed` (what to do on each gain and loss of a lease) and `_timers` (what
falls due)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from catgad.consumer.clock import Clock, SystemClock, rfc3339
from catgad.consumer.loop import LogReader, LoopSettings
from catgad.consumer.settings import LeasedSettings
from catgad.envelope import Envelope
from catgad.errors import ConcurrencyError
from catgad.ids import event_id
from catgad.model import Config
from catgad.observability.logs import get_logger
from catgad.reactors.decisions import Decide
from catgad.reactors.send import CommandSender
from catgad.store.lease import LeaseKeeper, Sharing
from catgad.store.protocol import AppendResult, Coordination, EventStore

log = get_logger("catgad.reactors")


class Entry(Protocol):
    """One definition's place in a runner: its name and the lease its driver holds."""

    @property
    def name(self) -> str: ...

    lease: LeaseKeeper | None


class ReactorRunner:
    name = "reactor"  # the component's name, and its log follower's
    lease_kind = "reactor"  # leases are `<lease_kind>:<definition>`

    def __init__(
        self,
        config: Config,
        store: EventStore,
        sender: CommandSender,
        entries: Mapping[str, Entry],
        *,
        owner: str,
        clock: Clock | None,
        settings: LeasedSettings | None,
        drive: bool,
    ) -> None:
        self.config = config
        self.store = store
        self.sender = sender
        self.owner = owner
        self.clock = clock or SystemClock()
        self.settings = settings or LeasedSettings()
        self.drive = drive  # False: follow only (listings), never act (one-shot tools)
        self.entries = entries
        self.sharing: Sharing | None = None  # set before start by a worker of several
        self.loop = LogReader(
            store,
            self,
            name=self.name,
            settings=LoopSettings(
                poll_interval=self.settings.poll_interval, linger=self.settings.linger
            ),
            on_idle=self._idle,
        )
        self._caught_up = asyncio.Event()
        self._changed = asyncio.Event()  # set whenever a decision passes in the log
        self._wake = asyncio.Event()  # the timer task looks again
        self._running = False  # started, and driving if `drive`
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def __bool__(self) -> bool:
        return bool(self.entries)

    def status(self) -> dict[str, Any]:
        """Each definition: whether this daemon drives it, and its instances."""
        raise NotImplementedError

    async def handle(self, events: list[Envelope]) -> int:
        raise NotImplementedError

    async def _leading_changed(self, entry: Any, leading: bool) -> None:
        """This daemon began (`leading`) or ceased to drive `entry`."""
        raise NotImplementedError

    async def _supervise(self, entry: Entry) -> None:
        """Follow `entry`'s lease: `_leading_changed` on each gain and loss (on a store without
        leases, once: this daemon drives)."""
        leading = False
        while not self._stopping:
            seen = entry.lease.changes if entry.lease is not None else 0
            now = self._leading(entry)
            if now != leading:
                await self._leading_changed(entry, now)
            leading = now
            if entry.lease is None:
                return
            await entry.lease.wait_change(entry.lease.period, since=seen)

    async def _timers(self) -> None:
        raise NotImplementedError

    # -- component ------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.entries:
            return
        self.loop.start()
        self._running = True
        if not self.drive:
            return
        for entry in self.entries.values():
            entry.lease = self._lease_for(entry)
            if entry.lease is not None:
                entry.lease.start()
        self._start_drivers()

    def _lease_for(self, entry: Entry) -> LeaseKeeper | None:
        """The lease `<lease_kind>:<name>` of a store that coordinates daemons (not started)."""
        if not isinstance(self.store, Coordination):
            return None
        return LeaseKeeper(
            self.store,
            self._lease_name(entry),
            self.owner,
            self.settings.lease_ttl,
            sharing=self.sharing,
        )

    def _lease_name(self, entry: Entry) -> str:
        return f"{self.lease_kind}:{entry.name}"

    def lease_names(self) -> list[str]:
        """The leases start() will keep (with a store that coordinates daemons)."""
        return [self._lease_name(entry) for entry in self.entries.values()]

    def _start_drivers(self) -> None:
        """A supervisor per definition, and the timer task."""
        for entry in self.entries.values():
            task = asyncio.create_task(
                self._supervise(entry), name=f"{self.lease_kind}:{entry.name}"
            )
            self._tasks.append(task)
        self._tasks.append(asyncio.create_task(self._timers(), name=f"{self.name}-timers"))

    async def stop(self) -> None:
        await self._halt()
        await self.loop.stop()
        for entry in self.entries.values():
            if entry.lease is not None:
                await entry.lease.stop(release=True)

    async def _halt(self) -> None:
        """Stop acting: wake the waiting tasks, cancel them and wait for them to end."""
        self._stopping = True
        self._wake.set()
        for entry in self.entries.values():
            if entry.lease is not None:
                entry.lease.nudge()
        tasks = [*self._tasks, *await self._finishing()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _finishing(self) -> Sequence[asyncio.Task[None]]:
        """Work to let finish before stopping (a command in flight); it is then cancelled."""
        return []

    def notify(self, result: AppendResult | None = None) -> None:
        if self.entries:
            self.loop.notify(result)

    def _idle(self) -> None:
        """The follower has read everything there is: the index is whole."""
        if not self._caught_up.is_set():
            self._caught_up.set()
            log.info(f"{self.name} caught up with the log", position=self.loop.position)

    def _leading(self, entry: Entry) -> bool:
        if not self.drive or self._stopping or not self._running:
            return False
        return entry.lease is None or entry.lease.held()

    # -- decisions --------------------------------------------------------------------------------

    def decision(
        self, stream: str, commit: str, index: int, decision: Decide, now: float, cause: str | None
    ) -> Envelope:
        """The `index`-th decision of `commit`: an id derived from it (catgad.ids), so a commit
        made again after a crash is the same command, kept once; no id claims on NATS."""
        return Envelope(
            type=decision.type,
            data={**decision.data, "at": now},
            id=event_id(commit, index),
            source=self.config.service.name,
            subject=stream,
            time=rfc3339(now),
            correlationid=stream,
            causationid=cause,
        )

    async def append_decisions(
        self, stream: str, envelopes: list[Envelope], expected: int, commit: str
    ) -> AppendResult:
        """Append at the version the decisions were made on; ConcurrencyError when the instance
        moved meanwhile (or the same commit was stored already)."""
        result = await self.store.append(
            stream, envelopes, expected_version=expected, command_id=commit
        )
        if result.duplicate:
            raise ConcurrencyError(stream, expected, result.version)
        self.loop.notify(result)
        return result
