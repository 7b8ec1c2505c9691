"""Loading aggregate state from a store, with snapshots and a bounded in-process cache."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from catgad.aggregates.rules import evolve, initial_state
from catgad.config.model import AggregateDef
from catgad.envelope import Envelope
from catgad.store.protocol import EventStore, Snapshot


@dataclass(slots=True)
class Loaded:
    state: dict[str, Any]
    version: int


class StateLoader:
    """Gives the current state of a stream: cache, else snapshot + later events.

    The cache is only an optimisation: appends always carry the version the
    state was computed at, so a stale entry (another process appended) shows
    up as a ConcurrencyError and the caller reloads with `fresh=True`.
    """

    def __init__(self, store: EventStore, *, capacity: int = 10_000) -> None:
        self._store = store
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._capacity = capacity

    async def load(self, aggregate: AggregateDef, stream: str, *, fresh: bool = False) -> Loaded:
        if not fresh:
            hit = self._cache.get(stream)
            if hit is not None:
                self._cache.move_to_end(stream)
                return hit
        loaded = await self._load_from_store(aggregate, stream)
        self._remember(stream, loaded)
        return loaded

    async def _load_from_store(self, aggregate: AggregateDef, stream: str) -> Loaded:
        state = initial_state(aggregate)
        version = 0
        if aggregate.snapshot_every:
            snap = await self._store.load_snapshot(stream)
            if snap is not None:
                state, version = dict(snap.state), snap.version
        for event in await self._store.read(stream, after=version):
            state = evolve(aggregate, state, event)
            version = event.streamversion or version + 1
        return Loaded(state, version)

    async def advance(
        self, aggregate: AggregateDef, stream: str, before: Loaded, events: list[Envelope]
    ) -> Loaded:
        """Apply freshly appended events; take a snapshot when the policy says so."""
        state = before.state
        for event in events:
            state = evolve(aggregate, state, event)
        after = Loaded(state, before.version + len(events))
        self._remember(stream, after)
        every = aggregate.snapshot_every
        if every and events and after.version // every > before.version // every:
            await self._store.save_snapshot(Snapshot(stream, after.version, state))
        return after

    def forget(self, stream: str) -> None:
        self._cache.pop(stream, None)

    def _remember(self, stream: str, loaded: Loaded) -> None:
        self._cache[stream] = loaded
        self._cache.move_to_end(stream)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
