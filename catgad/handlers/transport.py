"""The HTTP client of webhooks: httpcore's HTTP/1.1 connection pools over plain asyncio streams.

Measured on the handler benchmark (2 cores, 32 requests in flight, a Node.js
server answering at once), CPU of the client per request:

    httpx transport (httpx models, anyio streams)   354 µs
    httpcore pool, anyio streams                     292 µs
    httpcore pool, asyncio streams (this module)     222 µs

so the layers between a webhook and its socket cost more than everything
catgad does around a call. What each layer did and why it is not needed here:

- httpx's Request/Response models parse the URL and merge headers on every
  request; a webhook posts to one URL, so its `Target` (URL, Host and fixed
  headers) is built once.
- anyio's streams open a cancel scope around every read and write to apply
  httpcore's per-phase timeouts; the webhook bounds the whole attempt instead
  (connect + send + wait + read, as "timeout: 2s" reads: webhook.Deadlines),
  so the streams below need no timers of their own.
- httpcore writes a request's head and body in two calls; they are sent as one
  segment (AsyncioStream.HOLD).

The pool is still httpcore's: keep-alive, HTTP/1.1 framing and parsing (h11),
dropped idle connections noticed before reuse, TLS. Its exceptions are
httpcore's; the webhook maps them to retryable failures.
"""

from __future__ import annotations

import asyncio
import itertools
import select
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from catgad import __version__

Headers = Sequence[tuple[bytes, bytes]]

_EXTRA_INFO = {"client_addr": "sockname", "server_addr": "peername"}


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection as httpcore sees it. The `timeout` parameters are httpcore's
    interface and are ignored: the caller bounds the whole request (module docstring)."""

    __slots__ = ("_pending", "_pending_size", "_poll", "_reader", "_writer")

    # Writes are held until the response is read (or this much is held): httpcore writes a
    # request's head and body separately, and two sends are two segments, each waking the
    # server: one send per request took 10% (bare round trip) to 20% (whole webhook command)
    # off the client's CPU per request on the handler benchmark.
    HOLD = 64 * 1024

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._poll = select.poll()
        self._poll.register(writer.get_extra_info("socket").fileno(), select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        if self._pending:
            await self._flush()
        try:
            return await self._reader.read(max_bytes)
        except OSError as exc:
            raise httpcore.ReadError(_text(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        self._pending.append(buffer)
        self._pending_size += len(buffer)
        if self._pending_size >= self.HOLD:
            await self._flush()

    async def _flush(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise httpcore.WriteError(_text(exc)) from exc

    async def aclose(self) -> None:
        # Not waiting for the close to complete: it is called under cancellation too,
        # and a peer that stopped reading must not hold the caller.
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
    ) -> httpcore.AsyncNetworkStream:
        try:
            await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except (OSError, ssl.SSLError) as exc:
            self._writer.close()
            raise httpcore.ConnectError(_text(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of idle keep-alive connections: has the server closed this one? If the
            # loop has seen it, the reader is at EOF; if the close came since the loop last
            # looked (say the loop was busy), only the socket knows, and polling it leaves
            # what it holds for the loop to read.
            return (
                self._reader.at_eof()
                or self._reader.exception() is not None
                or bool(self._poll.poll(0))
            )
        return self._writer.get_extra_info(_EXTRA_INFO.get(info, info))


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio streams (asyncio sets TCP_NODELAY itself)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            reader, writer = await asyncio.open_connection(
                host, port, local_addr=(local_address, 0) if local_address else None
            )
        except OSError as exc:
            raise httpcore.ConnectError(_text(exc)) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError as exc:
            raise httpcore.ConnectError(_text(exc)) from exc
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a webhook POSTs, with the headers that are the same on every request."""

    url: httpcore.URL
    fixed: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def of(cls, url: str) -> Target:
        parsed = httpx.URL(url)  # the URL rules httpx applied before: IDNA, IPv6, default port
        return cls(
            httpcore.URL(
                scheme=parsed.raw_scheme,
                host=parsed.raw_host,
                port=parsed.port,
                target=parsed.raw_path,
            ),
            (
                (b"host", parsed.netloc),
                (b"content-type", b"application/json"),
                (b"user-agent", f"catgad/{__version__}".encode()),
            ),
        )


class ClientPool:
    """Keep-alive connections to one handler: httpcore pools, a few of them, taken in turn.

    The pool is split because one httpcore pool with many connections spends its
    time matching waiting requests to connections (it scans every connection for
    every waiting request): 380 req/s through one pool of 256 connections, 1,540
    through 8 pools of 8 (a local server, 32 concurrent requests). Redirects are
    not followed and no cookies are kept: a webhook answers, it does not browse.
    """

    SHARDS = 8

    def __init__(self, connections: int, *, ssl_context: ssl.SSLContext | None = None) -> None:
        per_pool = max(1, connections // self.SHARDS)
        backend = AsyncioBackend()
        self._pools = [
            httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=per_pool,
                max_keepalive_connections=per_pool,
                keepalive_expiry=30.0,
                http1=True,
                http2=False,
                network_backend=backend,
            )
            for _ in range(self.SHARDS)
        ]
        self._turn = itertools.cycle(self._pools)
        self._targets: dict[str, Target] = {}

    @classmethod
    def for_url(cls, url: str, connections: int) -> ClientPool:
        """A pool for `url`: TLS trust (httpx's, certifi) is loaded once, and only for https."""
        tls = httpx.create_ssl_context() if url.startswith("https:") else None
        return cls(connections, ssl_context=tls)

    def target(self, url: str) -> Target:
        found = self._targets.get(url)
        if found is None:
            found = self._targets[url] = Target.of(url)
        return found

    async def post(self, target: Target | str, body: bytes, headers: Headers) -> tuple[int, bytes]:
        """(status, body) of one POST; httpcore's exceptions are the caller's to map, and so
        is the time limit (nothing here waits on a timer)."""
        if isinstance(target, str):
            target = self.target(target)
        request = httpcore.Request(
            b"POST",
            target.url,
            headers=[*target.fixed, (b"content-length", b"%d" % len(body)), *headers],
            content=body,
        )
        response = await next(self._turn).handle_async_request(request)
        try:
            return response.status, await response.aread()
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def _text(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__
