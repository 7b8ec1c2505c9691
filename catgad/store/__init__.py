"""Event stores: one Protocol, one module per backend."""

from catgad.store.protocol import AppendResult, Capability, EventStore, Snapshot

__all__ = ["AppendResult", "Capability", "EventStore", "Snapshot"]
