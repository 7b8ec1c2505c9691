"""A handler written in Python, found through an entry point in group `catgad.handlers`.

A command handler is `handler(command, state) -> list[event]`, a function or a
coroutine function: `command` is the CloudEvent as a dict, `state` the
aggregate's state, each event a dict `{"type": ..., "data": {...}}`. It may
raise `catgad.Rejected(reason)`, which the caller receives as a 409. An
upcaster plugin is a plain function `upcast(event) -> data`.

Plain functions run inline on the event loop, not on a thread: a handler
decides from its arguments, which takes microseconds, and a thread hop would
cost more than that while the GIL gives no parallelism back. A function that
blocks (network, disk) is declared `blocking: true` and runs on a worker
thread instead, or is written as a coroutine.

Both get copies: a handler may mutate what it is given without touching the
engine's cached state.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

import orjson

from catgad.aggregates.model import EventDef
from catgad.config.loader import did_you_mean
from catgad.errors import CommandRejected, HandlerError, Rejected
from catgad.handlers.protocol import (
    HandlerReply,
    HandlerRequest,
    ReplyCheck,
    Stats,
    kind_of,
    observed,
)
from catgad.handlers.section import HandlerConfig
from catgad.observability.logs import get_logger

GROUP = "catgad.handlers"
Use = Literal["command", "upcaster"]
_CALLS: dict[Use, tuple[int, str]] = {
    "command": (2, "handler(command, state)"),
    "upcaster": (1, "upcast(event)"),
}

log = get_logger("catgad.handlers")


class PluginError(Exception):
    """A plugin that cannot be used: not installed, not importable, wrong signature."""


@cache
def _group() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def entry_point(name: str) -> EntryPoint:
    found = _group().get(name)
    if found is None:
        installed = sorted(_group())
        hint = did_you_mean(name, installed) or (
            f" (installed: {', '.join(installed)})" if installed else " (none installed)"
        )
        raise PluginError(f"no entry point {name!r} in group {GROUP}{hint}")
    return found


def load(name: str, uses: set[Use]) -> Callable[..., Any]:
    """The entry point's object, checked to be callable the way each use calls it."""
    ep = entry_point(name)
    try:
        fn: Callable[..., Any] = ep.load()
    except Exception as exc:  # an import error of user code: shown, not raised
        raise PluginError(
            f"entry point {name!r} ({ep.value}) cannot be imported: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(fn):
        raise PluginError(f"entry point {name!r} ({ep.value}) is not callable")
    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: trust them
        signature = None
    for use in sorted(uses):
        arity, call = _CALLS[use]
        if signature is not None:
            try:
                signature.bind(*range(arity))
            except TypeError:
                raise PluginError(
                    f"entry point {name!r} ({ep.value}) takes {signature}; "
                    f"a {use} is called as {call}"
                ) from None
        if use == "upcaster" and inspect.iscoroutinefunction(fn):
            raise PluginError(
                f"entry point {name!r} ({ep.value}) is a coroutine; an upcaster "
                "runs on every read and must be a plain function"
            )
    return fn


def _copy(value: Any) -> Any:
    """A deep copy of JSON data (orjson round trip: faster than copy.deepcopy)."""
    return orjson.loads(orjson.dumps(value))


class PluginHandler:
    """A command handler in Python, called in-process."""

    kind = "plugin"

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        events: Mapping[str, EventDef],
        *,
        blocking: bool = False,
    ) -> None:
        self.name = name
        self._fn = fn
        self._async = inspect.iscoroutinefunction(fn)
        self._blocking = blocking
        self._check = ReplyCheck(name, events)
        self.stats: Stats | None = None

    @classmethod
    def from_config(
        cls, cfg: HandlerConfig, fn: Callable[..., Any], events: Mapping[str, EventDef]
    ) -> PluginHandler:
        return cls(cfg.name, fn, events, blocking=bool(cfg.options.get("blocking", False)))

    async def close(self) -> None:
        return None

    def instrument(self, stats: Stats) -> None:
        self.stats = stats

    async def __call__(self, request: HandlerRequest) -> HandlerReply:
        if self.stats is None:
            return await self._call(request)
        return await observed(self.stats, self._call(request))

    async def _call(self, request: HandlerRequest) -> HandlerReply:
        command = _copy(request.command.to_dict())
        state = _copy(request.state)
        try:
            if self._async:
                result = await self._fn(command, state)
            elif self._blocking:
                result = await asyncio.to_thread(self._fn, command, state)
            else:
                result = self._fn(command, state)
                if inspect.isawaitable(result):  # a callable object with an async __call__
                    result = await result
        except Rejected as exc:
            raise CommandRejected(str(exc.reason), self.name) from None
        except CommandRejected:
            raise
        except Exception as exc:
            log.exception("plugin handler raised", handler=self.name)
            raise HandlerError(
                self.name, f"handler {self.name!r} raised {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(result, list | tuple):
            raise self._check.bad(f"returned {kind_of(result)}; a plugin returns a list of events")
        return self._check.events(result)
