"""Loading aggregate state from a store, with snapshots and a bounded in-process cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from catgad.aggregates.fingerprint import rules_fingerprint
from catgad.aggregates.model import AggregateDef, EventDef
from catgad.aggregates.rules import evolve, initial_state
from catgad.errors import RuleError, UnreadableStream
from catgad.observability.logs import get_logger
from catgad.store.protocol import EventStore, Snapshot

log = get_logger("catgad.state")

# A snapshot holds the state and the digest of the rules that folded it (see
# catgad.aggregates.fingerprint): {"$rules": digest, "$state": state}. "$" never
# starts a state field, and a snapshot without the digest (or with another) is
# ignored, so one taken before a rule change is never read as current.
_RULES, _STATE = "$rules", "$state"


@dataclass(slots=True)
class Loaded:
    state: dict[str, Any]
    version: int


class StateLoader:
    """Gives the current state of a stream: cache, else snapshot + later events.

    The cache is only an optimisation: appends always carry the version the
    state was computed at, so a stale entry (another process appended) shows
    up as a ConcurrencyError and the caller reloads with `fresh=True`. For the
    same reason a stream that is not cached may be guessed (`guess=True`) to be
    new: the initial state at version 0, read from nothing. Most commands on an
    uncached stream create it, and an append expecting version 0 fails on a
    stream that exists, so a wrong guess costs one conflict and a reload.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        events: Mapping[str, EventDef] | None = None,
        capacity: int = 10_000,
    ) -> None:
        self._store = store
        self._events = events or {}  # their versions and upcasters are part of the rules
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._capacity = capacity
        self._fingerprints: dict[str, str] = {}

    async def load(
        self, aggregate: AggregateDef, stream: str, *, fresh: bool = False, guess: bool = False
    ) -> Loaded:
        if not fresh:
            hit = self._cache.get(stream)
            if hit is not None:
                self._cache.move_to_end(stream)
                return hit
            if guess:  # not remembered: only an append that succeeds on it proves it
                return Loaded(initial_state(aggregate), 0)
        loaded = await self._load_from_store(aggregate, stream)
        self._remember(stream, loaded)
        return loaded

    async def _load_from_store(self, aggregate: AggregateDef, stream: str) -> Loaded:
        state = initial_state(aggregate)
        version = 0
        if aggregate.snapshot_every:
            snap = await self._store.load_snapshot(stream)
            if snap is not None:
                kept = snap.state.get(_STATE)
                if snap.state.get(_RULES) == self._fingerprint(aggregate) and isinstance(
                    kept, dict
                ):
                    state, version = dict(kept), snap.version
                else:
                    log.debug("snapshot ignored: taken under other rules", stream=stream)
        for event in await self._store.read(stream, after=version):
            try:
                state = evolve(aggregate, state, event)
            except RuleError as exc:
                raise UnreadableStream(
                    stream, event.streamversion or version + 1, event.type, exc
                ) from None
            version = event.streamversion or version + 1
        return Loaded(state, version)

    async def advance(
        self, aggregate: AggregateDef, stream: str, before: Loaded, after: Loaded
    ) -> None:
        """Remember the state the appended events gave; take a snapshot when the policy says
        so."""
        self._remember(stream, after)
        every = aggregate.snapshot_every
        if every and after.version // every > before.version // every:
            held = {_RULES: self._fingerprint(aggregate), _STATE: after.state}
            await self._store.save_snapshot(Snapshot(stream, after.version, held))

    def _fingerprint(self, aggregate: AggregateDef) -> str:
        digest = self._fingerprints.get(aggregate.name)
        if digest is None:
            digest = self._fingerprints[aggregate.name] = rules_fingerprint(aggregate, self._events)
        return digest

    def forget(self, stream: str) -> None:
        self._cache.pop(stream, None)

    def _remember(self, stream: str, loaded: Loaded) -> None:
        self._cache[stream] = loaded
        self._cache.move_to_end(stream)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
