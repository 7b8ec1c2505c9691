"""catgad over HTTP: a real `catgad run` daemon in a subprocess, loaded by httpx.

The daemon serves the benchmark's copy of the example config on a free
loopback port with its own SQLite file. The load generator, in this process,
has `concurrency` workers, each with its own keep-alive connection, sending an
order's commands one after the other; a command counts only when it is
answered 200/201. Two load generators: `httpx.AsyncClient` (what a Python user
would use) and a minimal HTTP/1.1 client on asyncio streams, which costs the
client far less CPU. Client and daemon share the machine's cores, so either
figure is a lower bound of what the daemon alone can do.
After the run the daemon is stopped with SIGTERM and the store is read back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.catgad_engine import (
    bench_config,
    count_in_file,
    drop_redis_read_models,
    load_bench_config,
    loop_factory,
)
from bench.workload import (
    Measurement,
    Progress,
    Send,
    Sender,
    Workload,
    drive,
    no_progress,
    verify,
)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
JSON_HEADERS = {"content-type": "application/json"}


class DaemonError(RuntimeError):
    """The daemon did not start, answered a command with an error, or did not stop cleanly."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Daemon:
    """`catgad run CONFIG --listen 127.0.0.1:PORT` as a child process."""

    def __init__(self, config_path: Path, db_path: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(os.environ, CATGAD_SQLITE_PATH=str(db_path))
        argv = [
            sys.executable,
            "-m",
            "catgad.cli.main",
            "run",
            str(config_path),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
        ]
        self._log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(
                    f"catgad run exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                response = await client.get("/readyz", timeout=1.0)
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        raise DaemonError(f"catgad run not ready after {START_TIMEOUT:g}s:\n{self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM, wait for the graceful shutdown; the exit code (0 expected)."""
        try:
            return terminate(self.proc, STOP_TIMEOUT)
        finally:
            self._log.close()


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, a graceful shutdown of up to `timeout` seconds, then SIGKILL; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _check(command_type: str, data: dict[str, Any], status: int, body: bytes) -> None:
    if status not in (200, 201):
        raise DaemonError(
            f"{command_type} {data.get('order_id')}: HTTP {status} "
            f"{body[:300].decode(errors='replace')}"
        )


def httpx_sender(url: str) -> Sender:
    """One `httpx.AsyncClient` per worker, one connection each.

    One client shared by all workers costs several times more CPU per request
    as its pool grows (httpcore scans the pool on every request): with 64
    connections the client, not the daemon, set the pace.
    """

    @asynccontextmanager
    async def opened() -> AsyncIterator[Send]:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:

            async def send(command_type: str, data: dict[str, Any]) -> None:
                response = await client.post(
                    f"/commands/{command_type}", content=orjson.dumps(data), headers=JSON_HEADERS
                )
                _check(command_type, data, response.status_code, response.content)

            yield send

    return opened


def raw_sender(port: int) -> Sender:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams, one connection per worker:
    a load generator light enough that the daemon, not the client, sets the pace."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[Send]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:

            async def send(command_type: str, data: dict[str, Any]) -> None:
                body = orjson.dumps(data)
                writer.write(
                    b"POST /commands/%s HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                    b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (command_type.encode(), len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                length = None
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length is None:
                    raise DaemonError(f"{command_type}: reply without content-length: {head!r}")
                _check(command_type, data, int(head[9:12]), await reader.readexactly(length))

            yield send
        finally:
            writer.close()

    return opened


CLIENTS = ("httpx", "raw")


async def _load(
    daemon: Daemon, workload: Workload, client: str, progress: Progress
) -> tuple[float, list[int]]:
    async with httpx.AsyncClient(base_url=daemon.url) as probe:
        await daemon.wait_ready(probe)
    sender = httpx_sender(daemon.url) if client == "httpx" else raw_sender(daemon.port)
    return await drive(workload, sender, progress)


def run(
    workload: Workload,
    synchronous: str,
    workdir: Path,
    *,
    client: str = "httpx",
    progress: Progress = no_progress,
) -> Measurement:
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")
    config_path = bench_config(workdir / "config", synchronous)
    db_path = workdir / "catgad-http.db"
    config = load_bench_config(config_path, db_path, synchronous)  # the daemon's view, checked
    daemon = Daemon(config_path, db_path, workdir / "daemon.log")
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            seconds, latencies = runner.run(_load(daemon, workload, client, progress))
    finally:
        code = daemon.stop()
        drop_redis_read_models(config)
    if code != 0:
        raise DaemonError(f"catgad run exited with {code} after SIGTERM:\n{daemon.log_tail()}")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        counted = runner.run(count_in_file(config, workload))
    label = "httpx, a client per connection" if client == "httpx" else "raw HTTP/1.1 client"
    m = Measurement(
        system="catgad http",
        variant=f"{workload.concurrency} connections, {label}",
        synchronous=synchronous,
        commands=len(latencies),
        events=len(latencies),
        seconds=seconds,
        latencies_ns=latencies,
    )
    verify(m, workload, counted)
    return m
