"""What the multi-daemon tests share: a load that survives a dead daemon, and the checks after it.

    load = Load(daemons, streams=20, commands=400)
    await load.run(after=(130, kill_one))   # kill_one() runs once 130 commands were acknowledged
    check_stored(load, stored)              # every 2xx command's events stored exactly once...
    check_delivered(stored, seen)           # ...and delivered at least once, in stream order
    load.tries                              # every HTTP try: daemon, sent, answered, outcome

Every command has its own id (sent as Idempotency-Key), a home daemon (the
commands alternate between daemons) and a counter among the 20. A command that
gets a 503, a version conflict or a broken connection is sent again, with the
same id, to a daemon that is still running, until it is acknowledged (2xx) or
its deadline passes; so at the end every command is acknowledged, and retries
must not have stored anything twice.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from catgad.envelope import Envelope
from tests.helpers.daemon import Daemon

RETRYABLE = frozenset({503, 502})  # dependency down, or a replica that vanished mid-reply
BACKOFF = 0.05  # seconds between two tries of one command


@dataclass(frozen=True, slots=True)
class Try:
    """One HTTP try of a command: which daemon, when sent and answered (monotonic), what came."""

    daemon: int
    stream: str
    sent: float
    answered: float
    outcome: str  # "201", "503", "transport:ConnectError", ...

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


@dataclass
class Command:
    id: str
    counter: str
    n: int
    home: int  # index of the daemon it is sent to first
    tries: int = 0
    status: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return f"Counter-{self.counter}"


class Load:
    """A few hundred Add commands on a few counters, sent concurrently to every daemon."""

    def __init__(
        self,
        daemons: Sequence[Daemon],
        *,
        streams: int = 20,
        commands: int = 400,
        concurrency: int = 48,
        deadline: float = 60.0,
        seed: int = 7,
    ) -> None:
        rng = random.Random(seed)
        run = uuid.uuid4().hex[:8]
        self.daemons = list(daemons)
        self.counters = [f"{run}-{i}" for i in range(streams)]
        self.commands = [
            Command(
                id=str(uuid.uuid4()),
                counter=rng.choice(self.counters),
                n=rng.randint(1, 9),
                home=i % len(daemons),
            )
            for i in range(commands)
        ]
        self.concurrency = concurrency
        self.deadline = deadline
        self.acknowledged = 0
        self.outcomes: Counter[str] = Counter()  # what each try got, e.g. "201", "503", "reset"
        self.tries: list[Try] = []  # every try of every command, in the order they ended
        self._progress = asyncio.Event()

    async def run(self, *, after: tuple[int, Callable[[], Awaitable[None]]] | None = None) -> None:
        """Send every command until acknowledged; run `after[1]` once `after[0]` were."""
        queue: asyncio.Queue[Command] = asyncio.Queue()
        for command in self.commands:
            queue.put_nowait(command)
        limits = httpx.Limits(max_connections=self.concurrency)
        clients = [d.async_client(timeout=30.0, limits=limits) for d in self.daemons]
        try:
            workers = [
                asyncio.create_task(self._work(queue, clients)) for _ in range(self.concurrency)
            ]
            hook = asyncio.create_task(self._after(*after)) if after else None
            await asyncio.gather(*workers)
            if hook is not None:
                await hook
        finally:
            for client in clients:
                await client.aclose()

    async def _after(self, count: int, action: Callable[[], Awaitable[None]]) -> None:
        while self.acknowledged < count:
            self._progress.clear()
            await self._progress.wait()
        await action()

    async def _work(self, queue: asyncio.Queue[Command], clients: list[httpx.AsyncClient]) -> None:
        while not queue.empty():
            command = queue.get_nowait()
            await self._send(command, clients)
            self.acknowledged += 1
            self._progress.set()

    async def _send(self, command: Command, clients: list[httpx.AsyncClient]) -> None:
        give_up = time.monotonic() + self.deadline
        body = {"counter_id": command.counter, "n": command.n}
        headers = {"Idempotency-Key": command.id}
        target = command.home
        while True:
            command.tries += 1
            daemon = self.daemons[target]
            if daemon.running:
                sent = time.monotonic()
                try:
                    resp = await clients[target].post("/commands/Add", json=body, headers=headers)
                except httpx.TransportError as exc:
                    outcome = f"transport:{type(exc).__name__}"
                    self.tries.append(Try(target, command.stream, sent, time.monotonic(), outcome))
                else:
                    outcome = str(resp.status_code)
                    self.tries.append(Try(target, command.stream, sent, time.monotonic(), outcome))
                    if resp.status_code in (200, 201):
                        command.status = resp.status_code
                        command.events = resp.json()["events"]
                        self.outcomes[outcome] += 1
                        return
                    conflict = resp.status_code == 409 and "version-conflict" in resp.text
                    if resp.status_code not in RETRYABLE and not conflict:
                        why = f"{resp.status_code} {resp.text}"
                        raise AssertionError(f"command {command.id}: {why}")
                self.outcomes[outcome] += 1
                command.failures.append(outcome)
            if time.monotonic() > give_up:
                raise AssertionError(f"command {command.id} not acknowledged: {command.failures}")
            target = (target + 1) % len(self.daemons)  # the other daemon, next time
            await asyncio.sleep(BACKOFF)  # a pause between tries, not a wait for a condition


def check_stored(load: Load, stored: dict[str, list[Envelope]]) -> None:
    """Every acknowledged command's events stored exactly once; versions 1..n per stream."""
    by_id: dict[str, Envelope] = {}
    for stream, events in stored.items():
        assert [e.streamversion for e in events] == list(range(1, len(events) + 1)), stream
        for event in events:
            assert event.id not in by_id, f"event {event.id} stored twice"
            by_id[event.id] = event
    caused = Counter(e.causationid for e in by_id.values())
    for command in load.commands:
        assert command.status in (200, 201), command
        [sent] = command.events  # one Added per Add
        event = by_id.get(sent["id"])
        assert event is not None, f"acknowledged event {sent['id']} is not in the store"
        assert event.subject == command.stream
        assert event.streamversion == sent["streamversion"]
        assert event.data == {"counter_id": command.counter, "n": command.n}
        assert caused[command.id] == 1, f"command {command.id} stored {caused[command.id]} times"
    assert len(by_id) == len(load.commands), "events stored by no acknowledged command"
    totals: dict[str, int] = defaultdict(int)
    for command in load.commands:
        totals[command.stream] += command.n
    for stream, events in stored.items():
        assert sum(e.data["n"] for e in events) == totals[stream], f"lost update on {stream}"


def check_delivered(stored: dict[str, list[Envelope]], seen: Sequence[Envelope]) -> None:
    """Every stored event reached the consumer at least once, each stream's first in order."""
    stored_ids = {e.id for events in stored.values() for e in events}
    first: dict[str, list[int]] = defaultdict(list)  # stream -> versions, in first-seen order
    known: set[str] = set()
    for event in seen:
        if event.id in known:
            continue  # a redelivery; consumers deduplicate by id
        known.add(event.id)
        first[str(event.subject)].append(int(event.streamversion or 0))
    assert stored_ids <= known, f"{len(stored_ids - known)} stored events never delivered"
    for stream, versions in first.items():
        assert versions == list(range(1, len(versions) + 1)), f"{stream} out of order: {versions}"
