"""A real `catgad run` subprocess for tests: free port, own SQLite file, ready when /readyz says so.

    with Daemon(ORDERS_YAML, tmp_path) as d:
        httpx.post(f"{d.url}/commands/CreateOrder", json={...})
        d.kill()          # SIGKILL, like a power cut
        d.restart()       # same port, same database

The daemon's stderr (its JSON log) goes to a file, so a test can read it and
a failing start shows it. Every wait has a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
ORDERS_YAML = REPO / "config" / "examples" / "orders.yaml"
POLL = 0.05  # seconds between checks of a condition


def edited_example(folder: Path, replacements: Mapping[str, str]) -> Path:
    """The orders example (and the files it includes) copied into `folder`, with each key of
    `replacements` in orders.yaml (it must be there) replaced once by its value."""
    folder.mkdir()
    for path in ORDERS_YAML.parent.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    target = folder / ORDERS_YAML.name
    text = target.read_text()
    for old, new in replacements.items():
        assert old in text, f"{old!r} is not in {ORDERS_YAML.name} any more"
        text = text.replace(old, new, 1)
    target.write_text(text)
    return target


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`catgad ARGS...` in a subprocess; returns the finished process with its output."""
    return subprocess.run(
        [sys.executable, "-m", "catgad.cli.main", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class DaemonError(AssertionError):
    """The daemon did not start, or did not stop, as a test expected; carries its log."""


class Daemon:
    """One `catgad run CONFIG` process, restartable on the same port and database."""

    def __init__(
        self,
        config: str | os.PathLike[str],
        workdir: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        listen_flag: bool = True,
        ready_timeout: float = 30.0,
    ) -> None:
        """`listen_flag=False` leaves the address to the config's `${CATGAD_LISTEN}`."""
        self.config = Path(config)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.workdir / "catgad.db"
        self.log_path = self.workdir / "daemon.log"
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.extra_args = list(args)
        self.listen_flag = listen_flag
        self.ready_timeout = ready_timeout
        self.env = {
            **os.environ,
            "CATGAD_SQLITE_PATH": str(self.db_path),
            # the example's read models: a file of its own, a Redis key prefix of its own
            "CATGAD_READ_SQLITE_PATH": str(self.workdir / "read.db"),
            "CATGAD_REDIS_PREFIX": f"catgad-test:{uuid.uuid4().hex[:12]}:",
            "CATGAD_LISTEN": f"{host}:{self.port}",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Daemon:
        if self.running:
            raise DaemonError("daemon already running")
        cmd = [sys.executable, "-m", "catgad.cli.main", "run", str(self.config)]
        if self.listen_flag:
            cmd += ["--listen", f"{self.host}:{self.port}"]
        cmd += self.extra_args
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, env=self.env, cwd=self.workdir, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.starts += 1
        try:
            self.wait_ready()
        except DaemonError:
            # a `with Daemon(...)` whose start fails never reaches __exit__: no orphan left
            self.proc.kill()
            self.proc.wait()
            raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll /readyz until it answers 200; fail early, with the log, if the process exits."""
        timeout = timeout or self.ready_timeout
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise DaemonError(f"daemon exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise DaemonError(f"daemon not ready after {timeout}s:\n{self.logs()}")
                time.sleep(POLL)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit by itself (after a signal already sent); its exit code."""
        if self.proc is None:
            raise DaemonError("daemon never started")
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DaemonError(f"daemon still running after {timeout}s:\n{self.logs()}") from None

    def send_signal(self, sig: signal.Signals) -> None:
        """Send `sig` without waiting (e.g. SIGTERM while requests are in flight)."""
        if self.proc is None:
            raise DaemonError("daemon never started")
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful shutdown) and wait; returns the exit code."""
        return self._signal(signal.SIGTERM, timeout)

    def interrupt(self, timeout: float = 30.0) -> int:
        """SIGINT, as Ctrl+C would send; returns the exit code."""
        return self._signal(signal.SIGINT, timeout)

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL: no shutdown at all, like a crash; returns the exit code (-9)."""
        return self._signal(signal.SIGKILL, timeout)

    def restart(self) -> Daemon:
        """Stop if running (gracefully), then start again on the same port and database."""
        if self.running:
            self.terminate()
        return self.start()

    def stop(self) -> None:
        """Terminate if still running, killing after the deadline; safe to call twice."""
        if not self.running:
            return
        try:
            self.terminate(timeout=15.0)
        except DaemonError:
            self.kill()

    def _signal(self, sig: signal.Signals, timeout: float) -> int:
        if self.proc is None:
            raise DaemonError("daemon never started")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    # -- inspection -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DaemonError("daemon never started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10.0)
        return httpx.AsyncClient(base_url=self.url, **kwargs)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
