"""Delivers projection events to a Python plugin: `handler(event)`, a function or a coroutine.

The plugin is the entry point the handler names (group `catgad.handlers`,
found by catgad.handlers.plugin); it gets the CloudEvent as a dict (its `id`
deduplicates a redelivery) plus `position`, and its return value is ignored.
Raising catgad.errors.HandlerUnavailable means "try again later"; raising
anything else makes the event poison. A plugin declared `blocking: true` runs
on a worker thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from catgad.envelope import Envelope
from catgad.errors import HandlerError, HandlerUnavailable, Rejected
from catgad.handlers.plugin import PluginError, entry_point
from catgad.handlers.section import HandlerConfig


def load_projection_plugin(name: str) -> Callable[..., Any]:
    """The entry point's callable, checked to take one argument (the event)."""
    ep = entry_point(name)
    try:
        fn = ep.load()
    except Exception as exc:
        raise PluginError(
            f"entry point {name!r} ({ep.value}) cannot be imported: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(fn):
        raise PluginError(f"entry point {name!r} ({ep.value}) is not callable")
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        raise PluginError(
            f"entry point {name!r} ({ep.value}) takes {inspect.signature(fn)}; "
            "a projection handler is called as handler(event)"
        ) from None
    except ValueError:  # no signature to check
        pass
    fn_: Callable[..., Any] = fn
    return fn_


class PluginDelivery:
    kind = "plugin"

    def __init__(self, handler: HandlerConfig, fn: Callable[..., Any] | None = None) -> None:
        self.handler = handler.name
        self.entry_point = handler.entry_point or ""
        self._fn = fn
        self._blocking = bool(handler.options.get("blocking", False))

    async def open(self) -> None:
        """Load the entry point; one that cannot be loaded keeps the projection waiting."""
        if self._fn is None:
            try:
                self._fn = load_projection_plugin(self.entry_point)
            except PluginError as exc:
                raise HandlerError(self.handler, str(exc)) from None

    async def close(self) -> None:
        return None

    async def deliver(self, projection: str, event: Envelope) -> None:
        payload = {**event.to_dict(), "position": event.position, "projection": projection}
        if self._fn is None:
            await self.open()
        assert self._fn is not None
        try:
            if self._blocking:
                result = await asyncio.to_thread(self._fn, payload)
            else:
                result = self._fn(payload)
            if inspect.isawaitable(result):
                await result
        except HandlerUnavailable:
            raise
        except Rejected as exc:
            raise HandlerError(self.handler, f"handler {self.handler!r} refused: {exc}") from None
        except Exception as exc:
            raise HandlerError(
                self.handler, f"handler {self.handler!r} raised {type(exc).__name__}: {exc}"
            ) from None
