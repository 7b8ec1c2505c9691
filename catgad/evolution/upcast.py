"""Upcasting on read: a stored event at an older schema version is seen at its newest one.

Each event type declares one step per version (`events.E.upcasters.N`: N → N+1);
Chain runs them in order from the stored `dataschemaversion` to the type's
`version`. Declarative steps rename, fill defaults, compute fields with CEL
and drop fields; a plugin step is `upcast(event) -> data`. Steps are pure:
the same old event always gives the same new one, which is what lets
`catgad migrate` write the result back and lets a half-migrated store read the
same as a migrated one.

UpcastingStore wraps an EventStore and upcasts what every read path returns:
read (aggregate load, GET /streams), read_all (subscriptions, relays),
read_records (a projection's catch-up),
find_command and a duplicate append (a retried command's first result).
Events of a type without upcasters, or already current, pass through as they are.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from catgad.aggregates.model import EventDef, UpcastStep
from catgad.config.cel import CelEvalError
from catgad.envelope import Envelope
from catgad.errors import UpcastFailed
from catgad.model import Config
from catgad.store.codec import StoredEvent
from catgad.store.protocol import AppendResult, Capability, EventStore, Snapshot

UpcastFn = Callable[[dict[str, Any]], Any]


def _event_view(event: Envelope, version: int) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "subject": event.subject,
        "time": event.time,
        "streamversion": event.streamversion,
        "dataschemaversion": version,
    }


def apply_step(
    step: UpcastStep, event: Envelope, data: dict[str, Any], plugin: UpcastFn | None = None
) -> dict[str, Any]:
    """The data after one step (from `step.from_version` to the next); `data` is not changed."""
    version = step.from_version
    if step.handler is not None:
        if plugin is None:
            raise UpcastFailed(event.type, event.id, version, f"plugin {step.handler!r} not loaded")
        whole = event.to_dict()
        whole["data"] = copy.deepcopy(data)
        whole["dataschemaversion"] = version
        try:
            out = plugin(whole)
        except Exception as exc:
            raise UpcastFailed(
                event.type, event.id, version, f"{step.handler} raised {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(out, dict):
            raise UpcastFailed(
                event.type, event.id, version, f"{step.handler} returned {type(out).__name__}"
            )
        return out
    new = dict(data)
    for old, name in step.rename.items():
        if old in new:
            new[name] = new.pop(old)
    for name, value in step.defaults.items():
        if name not in new:
            new[name] = copy.deepcopy(value)
    if step.set:
        activation = {"data": new, "event": _event_view(event, version)}
        computed: dict[str, Any] = {}
        for name, expr in step.set.items():
            try:
                computed[name] = expr.evaluate(activation)
            except CelEvalError as exc:
                raise UpcastFailed(event.type, event.id, version, f"set.{name}: {exc}") from None
        new.update(computed)
    for name in step.remove:
        new.pop(name, None)
    return new


class Chain:
    """One event type's steps, from version 1 up to its current `version`."""

    __slots__ = ("_plugins", "_schema", "latest", "steps", "type")

    def __init__(self, event: EventDef, plugins: Mapping[str, UpcastFn]) -> None:
        self.type = event.name
        self._schema = event.validator
        self.latest = event.version
        self.steps = dict(sorted(event.upcasters.items()))
        self._plugins = plugins

    def covers(self, version: int) -> bool:
        """Whether an event stored at `version` can be brought to the latest."""
        return all(v in self.steps for v in range(version, self.latest))

    def upcast(self, event: Envelope) -> Envelope:
        """`event` at the latest version; the same object when there is nothing to do."""
        version = event.dataschemaversion or 1
        if version >= self.latest or not self.covers(version):
            return event
        data = event.data
        for v in range(version, self.latest):
            step = self.steps[v]
            plugin = self._plugins.get(step.handler) if step.handler else None
            data = apply_step(step, event, data, plugin)
        if self._schema.is_valid(data):  # numbers as the newest schema declares them
            data = self._schema.normalise(copy.deepcopy(data))  # steps share nested values
        return dataclasses.replace(event, data=data, dataschemaversion=self.latest)


class Upcasters:
    """Every event type's chain; `active` is False when no type declares upcasters."""

    def __init__(self, config: Config, plugins: Mapping[str, UpcastFn] | None = None) -> None:
        plugins = plugins or {}
        self.chains: dict[str, Chain] = {
            name: Chain(event, plugins)
            for name, event in config.events.items()
            if event.upcasters and event.version > 1
        }

    @property
    def active(self) -> bool:
        return bool(self.chains)

    def outdated(self, event: Envelope) -> bool:
        """Whether `event` is stored below its type's newest version and can be upcast."""
        chain = self.chains.get(event.type)
        if chain is None:
            return False
        version = event.dataschemaversion or 1
        return version < chain.latest and chain.covers(version)

    def upcast(self, event: Envelope) -> Envelope:
        chain = self.chains.get(event.type)
        return event if chain is None else chain.upcast(event)

    def upcast_all(self, events: list[Envelope]) -> list[Envelope]:
        """Upcast in place (the list is the caller's fresh copy) and return it."""
        chains = self.chains
        for index, event in enumerate(events):
            chain = chains.get(event.type)
            if chain is not None and (event.dataschemaversion or 1) < chain.latest:
                events[index] = chain.upcast(event)
        return events

    def upcast_records(self, records: list[StoredEvent]) -> list[StoredEvent]:
        """upcast_all for records: an outdated one is decoded whole, upcast and replaced,
        whether or not its body was decoded, so no read path sees an old version."""
        chains = self.chains
        for index, record in enumerate(records):
            chain = chains.get(record.type)
            if chain is not None and (record.dataschemaversion or 1) < chain.latest:
                event = record.envelope()
                upcast = chain.upcast(event)
                if upcast is not event:
                    records[index] = StoredEvent.of(upcast)
        return records

    def wrap(self, store: EventStore) -> EventStore:
        """`store` seen through the upcasters (itself when there are none)."""
        return UpcastingStore(store, self) if self.active else store


class UpcastingStore:
    """An EventStore whose reads return every event at its newest schema version.

    Every EventStore method is written out here; anything else the wrapped
    store offers (leases and checkpoints, rewrite) is passed through as it is,
    so the wrapper satisfies the same protocols. A new method that returns
    events must be added here, upcasting: tests/evolution checks that none is
    passed through unnoticed.
    """

    PASSED_THROUGH = frozenset(
        {
            "rewrite",
            "acquire_lease",
            "release_lease",
            "lease_owner",
            "load_checkpoint",
            "save_checkpoint",
            "reset_checkpoint",
        }
    )

    def __init__(self, inner: EventStore, upcasters: Upcasters) -> None:
        self.inner = inner
        self.upcasters = upcasters
        self.name: str = inner.name
        self.capabilities: Capability = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        *,
        expected_version: int | None,
        command_id: str,
    ) -> AppendResult:
        result = await self.inner.append(
            stream, events, expected_version=expected_version, command_id=command_id
        )
        return self._result(result) if result.duplicate else result

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> list[Envelope]:
        return self.upcasters.upcast_all(await self.inner.read(stream, after=after, limit=limit))

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[Envelope]:
        return self.upcasters.upcast_all(await self.inner.read_all(after=after, limit=limit))

    async def read_records(
        self, *, after: int = 0, limit: int = 1000, types: Collection[str] | None = None
    ) -> list[StoredEvent]:
        """The inner store's records (AttributeError when it has none), upcast like read_all."""
        reader: Any = self.inner
        records: list[StoredEvent] = await reader.read_records(
            after=after, limit=limit, types=types
        )
        return self.upcasters.upcast_records(records)

    async def stream_version(self, stream: str) -> int:
        return await self.inner.stream_version(stream)

    async def find_command(self, command_id: str) -> AppendResult | None:
        result = await self.inner.find_command(command_id)
        return None if result is None else self._result(result)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self.inner.save_snapshot(snapshot)

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        return await self.inner.load_snapshot(stream)

    def _result(self, result: AppendResult) -> AppendResult:
        if not result.events:
            return result
        return dataclasses.replace(result, events=self.upcasters.upcast_all(list(result.events)))
