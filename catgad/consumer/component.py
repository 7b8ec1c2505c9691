"""What the runtime runs beside the command engine: started in order, stopped in reverse.

A component is told of every append in its process (`notify`), so it need not
wait for its next poll; its `status()` feeds the operator's views. The relay,
the projections, the sagas and the command router are components; a new
reactor is one more, added to the runtime's list in one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from catgad.store.protocol import AppendResult


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Finish the work in hand, release what was taken; after it, nothing runs."""
        ...

    def notify(self, result: AppendResult | None = None) -> None:
        """Events were appended in this process."""
        ...

    def status(self) -> dict[str, Any]: ...


class Hooked:
    """A component made of callables, for parts whose own methods differ in shape."""

    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        notify: Callable[[AppendResult | None], None] | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self._start, self._stop = start, stop
        self._notify, self._status = notify, status

    async def start(self) -> None:
        await self._start()

    async def stop(self) -> None:
        await self._stop()

    def notify(self, result: AppendResult | None = None) -> None:
        if self._notify is not None:
            self._notify(result)

    def status(self) -> dict[str, Any]:
        return self._status() if self._status is not None else {}
