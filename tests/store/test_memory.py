"""The in-memory store passes the event store contract."""

from contextlib import AbstractAsyncContextManager

from catgad.store.protocol import EventStore
from tests.contracts.store import EventStoreContract
from tests.store.backends import memory_store


class TestMemoryStore(EventStoreContract):
    def make_store(self) -> AbstractAsyncContextManager[EventStore]:
        return memory_store()
