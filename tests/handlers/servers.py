"""Real webhook servers for the tests, each a subprocess: the fault server, the examples.

    with WebhookServer.python_faults(secrets=[SECRET]) as server:
        server.url("/triage")      # where to point a handler
        server.stats()             # what it received
        server.kill()              # SIGKILL, mid-request if need be

Node.js servers need the example's npm dependencies: `npm ci` runs once into a
cache directory keyed by the lockfile, and NODE_PATH points there.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NODE_EXAMPLE = REPO / "examples" / "webhooks" / "node"
PYTHON_EXAMPLE = REPO / "examples" / "webhooks" / "python" / "server.py"
CORPUS = HERE / "bad_replies"
SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"  # test secrets: base64 of random bytes
OLD_SECRET = "whsec_dGhlIG9sZCBzZWNyZXQsIHN0aWxsIGFjdGl2ZQ=="
_LISTENING = re.compile(r"listening on (https?://[0-9.]+:[0-9]+)")


class ServerError(AssertionError):
    """A server did not start; carries what it printed."""


class WebhookServer:
    """One server subprocess; its stdout is read by a thread, line by line."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.base = ""
        self.verify: ssl.SSLContext | bool = True  # trusts a TLS server, for stats() and mode()

    @classmethod
    def python_faults(
        cls,
        secrets: Sequence[str] = (SECRET,),
        *,
        slow: float = 5.0,
        trickle: float = 0.05,
        tls: tuple[Path, Path] | None = None,
    ) -> WebhookServer:
        argv = [sys.executable, str(HERE / "fault_server.py"), "--corpus", str(CORPUS)]
        argv += ["--slow", str(slow), "--trickle", str(trickle)]
        if tls is not None:
            argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        for secret in secrets:
            argv += ["--secret", secret]
        server = cls(argv)
        if tls is not None:
            server.verify = ssl.create_default_context(cafile=str(tls[0]))
        return server

    @classmethod
    def python_example(cls, secret: str) -> WebhookServer:
        return cls(
            [sys.executable, str(PYTHON_EXAMPLE)], {"PORT": "0", "ORDERS_WEBHOOK_SECRET": secret}
        )

    @classmethod
    def node_example(cls, node_modules: Path, secret: str) -> WebhookServer:
        env = {"PORT": "0", "ORDERS_WEBHOOK_SECRET": secret, "NODE_PATH": str(node_modules)}
        return cls(["node", str(NODE_EXAMPLE / "server.js")], env)

    def start(self, timeout: float = 20.0) -> WebhookServer:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(
                        f"{self.argv} did not start:\n{''.join(self.output)}"
                    ) from None
                continue
            match = _LISTENING.search(line)
            if match:
                self.base = match.group(1)
                return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def url(self, path: str) -> str:
        return self.base + path

    def wait_for_line(self, prefix: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line.strip()
        raise ServerError(f"no line starting {prefix!r}:\n{''.join(self.output)}")

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(self.url("/stats"), timeout=5, verify=self.verify).json()
        return body

    def requests(self, path: str) -> int:
        return int(self.stats()["requests"].get(path, 0))

    def wait_for_requests(self, path: str, count: int, timeout: float = 10.0) -> None:
        """Until `path` has received `count` requests (blocking: run it in a thread)."""
        deadline = time.monotonic() + timeout
        while self.requests(path) < count:
            if time.monotonic() > deadline:
                raise ServerError(f"{path} got {self.requests(path)} requests, not {count}")
            time.sleep(0.02)

    def mode(self, mode: str) -> None:
        httpx.post(self.url(f"/mode/{mode}"), timeout=5, verify=self.verify).raise_for_status()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> WebhookServer:
        return self.start() if self.proc is None else self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def npm_install(
    cache_root: Path, project: Path = NODE_EXAMPLE, marker: str = "standardwebhooks"
) -> Path:
    """The node_modules of `project` (the example webhook's by default), installed once per
    lockfile with `npm ci`; `marker` is a package that shows the install finished."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise ServerError("node and npm are needed for the Node.js tests")
    lock = (project / "package-lock.json").read_bytes()
    target = cache_root / f"node-{hashlib.sha256(lock).hexdigest()[:16]}"
    modules = target / "node_modules"
    if (modules / marker / "package.json").exists():
        return modules
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(project / name, target / name)
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise ServerError(f"npm ci failed:\n{done.stdout}\n{done.stderr}")
    return modules
