"""How catgad connects to NATS, the same for the store and the bus: one place for the
reconnect policy and the oldest server supported."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from catgad.errors import Unavailable

OLDEST_SERVER = (2, 9, 0)  # pull consumers with nak delays, filtered durables, direct gets


async def connect(
    url: str,
    *,
    name: str,
    timeout: float,  # noqa: ASYNC109 - also the connect timeout nats-py is given
    dependency: str,
    **callbacks: Callable[..., Awaitable[None]],
) -> Client:
    """A connection that reconnects for ever once made; Unavailable if the first one fails
    within `timeout`. `url` may list several servers, comma-separated."""
    servers = [s.strip() for s in url.split(",") if s.strip()]
    options: dict[str, Any] = dict(callbacks)
    try:
        # nats-py retries a first connect for ever when reconnects are unlimited
        async with asyncio.timeout(timeout):
            return await nats.connect(
                servers=servers,
                name=name,
                connect_timeout=timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                **options,
            )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise Unavailable(dependency, f"cannot connect to {url}: {exc!r}") from exc


def too_old(version: tuple[int, int, int], url: str) -> str | None:
    """Why a server at `version` cannot be used, or None."""
    if version >= OLDEST_SERVER:
        return None
    return (
        f"NATS server {'.'.join(map(str, version))} at {url} is older than"
        f" {'.'.join(map(str, OLDEST_SERVER))}, the oldest catgad supports"
    )
