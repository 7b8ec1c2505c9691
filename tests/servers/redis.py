"""Real Redis servers for tests: the shared one, private ones to break, and a reply-dropping proxy.

    url = server_url()                  # the shared server (or a private one started from PATH)
    async with redis_store() as store:  # an opened RedisStore on a fresh key prefix, wiped after
        ...
    with PrivateRedis(tmp_path) as srv:  # our own redis-server: kill -9 it, stop it, restart it
        srv.kill(); srv.start()

When no server answers at CATGAD_REDIS_URL (default redis://127.0.0.1:6379/0)
a private redis-server from PATH is started for the test session and named on
stderr. With neither, a test skips, or fails when CI=true (tests.support.ci.needed).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import redis.asyncio as aioredis

from catgad.store.redis import RedisStore
from tests.support.ci import needed
from tests.support.ports import free_port
from tests.support.servers import wait_started

SHARED_URL = os.environ.get("CATGAD_REDIS_URL", "redis://127.0.0.1:6379/0")
_chosen: list[str] = []  # the url this session uses, once decided


def answers(url: str, timeout: float = 1.0) -> str | None:
    """None when a Redis server answers PING at `url`, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def server_url() -> str:
    """The url of a Redis server for this test session; skips, or fails in CI, without one."""
    if _chosen:
        return _chosen[0]
    why = answers(SHARED_URL)
    if why is None:
        _chosen.append(SHARED_URL)
        return SHARED_URL
    if shutil.which("redis-server"):
        srv = PrivateRedis(Path(tempfile.mkdtemp(prefix="catgad-redis-")), persist=False)
        srv.start()
        atexit.register(srv.stop)
        print(f"\nno Redis at {SHARED_URL} ({why}); started {srv.url}", file=sys.stderr)
        _chosen.append(srv.url)
        return srv.url
    needed("Redis server", f"none at {SHARED_URL} ({why}) and no redis-server on PATH")


def unique_prefix() -> str:
    return f"catgad-test:{uuid.uuid4().hex[:12]}:"


async def wipe(url: str, prefix: str) -> int:
    """Delete every key under `prefix` (SCAN + UNLINK); how many there were."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    client = aioredis.Redis.from_url(url)
    gone = 0
    try:
        batch: list[Any] = []
        async for key in client.scan_iter(match=escaped + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                gone += await client.unlink(*batch)
                batch = []
        if batch:
            gone += await client.unlink(*batch)
    finally:
        await client.aclose()
    return gone


async def keys_under(url: str, prefix: str) -> set[bytes]:
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    client = aioredis.Redis.from_url(url)
    try:
        return {k async for k in client.scan_iter(match=escaped + "*", count=1000)}
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_store(
    url: str | None = None, prefix: str | None = None, **options: Any
) -> AsyncIterator[RedisStore]:
    """An opened store on a fresh prefix of the session's server; its keys are deleted after."""
    url = url or server_url()
    prefix = prefix or unique_prefix()
    store = RedisStore(url, prefix=prefix, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        await wipe(url, prefix)


class PrivateRedis:
    """A redis-server process of our own on a free port, which a test may kill and restart.

    With `persist` (the default) it writes an append-only file fsynced on every
    write (appendfsync always), so an acknowledged write survives kill -9; the
    same port and directory are used again by start() after a kill.
    """

    def __init__(self, directory: Path, *, persist: bool = True, extra: list[str] | None = None):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persist = persist
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else []
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"), *durability, *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_started(self.proc, lambda: answers(self.url, 0.2) is None,
                     f"redis-server on {self.port}", timeout=timeout,
                     log=self.directory / "redis.log")  # fmt: skip

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, like a crash: nothing is flushed beyond what was already fsynced."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def require_redis_server() -> None:
    """A test that starts its own redis-server needs the binary."""
    if shutil.which("redis-server") is None:
        needed("Redis server", "redis-server is not on PATH")


class DroppingProxy:
    """A TCP proxy to a Redis server that can lose the next reply after forwarding its request.

    drop_next_reply() arms it: the first bytes the server sends back after that
    are discarded and both sides of that connection are closed, as when a
    network fails after the server has acted but before the client heard.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._armed = False
        self.dropped = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def drop_next_reply(self) -> None:
        self._armed = True

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if replies and self._armed:
                        self._armed = False
                        self.dropped += 1
                        return  # the reply is lost; closing both ends below
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (writer, up_writer):
                    w.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))
