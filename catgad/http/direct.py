"""A command's answer written straight to uvicorn's connection: one write, no ASGI messages.

Under wrk, uvicorn's `send` was 14 to 17% of the daemon's main thread for each
command: two messages, each header name and value checked against regular
expressions, a socket write for the head and another for the body. The hot
route's answer is made here (its headers are catgad's own: the request id
checked by RequestContext, the stream path quoted) and written as uvicorn's
`send` would write it, in one go, with the same state changes on the
request's cycle. Measured in 4 interleaved rounds (together with leaving
RequestContext's `send` wrapper out): 164 -> 150 µs of CPU per command,
5,760 -> 6,340 requests/s (bench/RESULTS-http.md).

This uses parts of uvicorn that are not its API (the httptools protocol's
RequestResponseCycle and STATUS_LINE); tests/canary/test_uvicorn_private.py
checks them on the installed uvicorn. Anything else takes the ASGI way (`answer`
returns False): another server or HTTP implementation (h11), a test transport,
a connection whose writes are paused or that is gone, uvicorn's access log
writing (its line is written by uvicorn's `send`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from starlette.types import Send
from uvicorn.protocols.http import httptools_impl  # httptools is a dependency of catgad


def answer(send: Send, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bool:
    """Write the whole answer on `send`'s connection when `send` is uvicorn's httptools
    cycle's own and the connection takes writes now; False (nothing done) otherwise."""
    cycle: Any = getattr(send, "__self__", None)
    if (
        type(cycle) is not httptools_impl.RequestResponseCycle
        or cycle.response_started
        or cycle.disconnected
        or (cycle.access_log and cycle.access_logger.isEnabledFor(logging.INFO))
        or cycle.flow.write_paused
    ):
        return False
    parts = [httptools_impl.STATUS_LINE[status]]
    for name, value in (*cycle.default_headers, *headers):  # the Date header first, as uvicorn
        parts += (name, b": ", value, b"\r\n")
    if not cycle.keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()  # a receive() waiting for a disconnect looks again
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()  # the connection's next request (pipelined, or on keep-alive)
    return True
