"""Probes for a server process the tests started: wait until it answers, or say why it did not."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.ports import port_open

POLL = 0.02  # seconds between probes: a server that starts in 50 ms is not kept waiting


def wait_started(
    process: subprocess.Popen[bytes],
    answers: Callable[[], object],
    what: str,
    *,
    timeout: float = 15.0,
    log: Path | None = None,
) -> None:
    """Return once `answers()` is truthy; raise RuntimeError (with the log's tail) if the
    process exits first or `timeout` passes. The caller stops the process on failure."""
    deadline = time.monotonic() + timeout
    while not answers():
        if process.poll() is not None or time.monotonic() > deadline:
            state = (
                f"exited with {process.returncode}" if process.poll() is not None else "timed out"
            )
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} did not start ({state}):\n{tail}")
        time.sleep(POLL)


def listens(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """A probe for wait_started: something accepts connections on host:port."""
    return lambda: port_open(port, host)
