"""`catgad run --workers N`: N daemons in N processes on one listening address.

One Python process serves commands on one core (its event loop and the
interpreter lock), so a machine's other cores are used by more processes.
Each worker is a whole `catgad run`: its own store connections, bus client,
engine and aggregate cache. What makes that safe is what makes several
daemons on one store safe (SPEC: replicas):

- every append carries the version its state was decided at, so a worker
  whose cached state is stale gets a conflict and decides again on the stored
  state (or answers 409 to an If-Match), as with two daemons;
- the outbox relay, the projections, the sagas and the processes run once
  across the workers, each under its lease in the store; the leases are dealt
  round-robin, each worker asking first for its share (catgad.store.lease.
  Sharing), so that work is spread over the workers rather than all in one;
- a 2xx is sent only after the append is durable at the store's
  `synchronous` level, in whichever worker ran it.

Each worker listens on its own socket bound to the same address with
SO_REUSEPORT: the kernel spreads connections over the workers (one shared
accept queue lets the first awake worker take a burst of keep-alive
connections all at once). The sockets are bound here, before any worker
starts, so a port in use is one line and exit 1, and port 0 picks one port
for all.

The supervisor (this process) forwards SIGTERM/SIGINT to every worker, which
finishes its in-flight commands and exits 0; it exits 0 when all did. The
workers run in a process group of their own, so a terminal's Ctrl-C reaches
them once, through here; a worker whose supervisor is gone (kill -9) stops
by itself. A worker that exits on its own (a crash, a store it cannot open)
stops the others, and the exit code is 1.

Refused: the memory store (each process would hold its own events) and any
store without Capability.MULTI_PROCESS. The memory bus is allowed: in the
daemon nothing consumes it across processes (commands run where they arrive,
projections and reactors read the store), so each worker having its own is
what one daemon does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

from catgad.errors import CatgadError, UsageError
from catgad.model import Config
from catgad.observability.logs import get_logger
from catgad.store.factory import open_store
from catgad.store.protocol import Capability

log = get_logger("catgad.run")

ORPHAN_CHECK = 1.0  # seconds between a worker's looks at whether its supervisor lives


def check(config: Config, workers: int) -> None:
    """UsageError when `workers` processes cannot serve this config."""
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if workers == 1:
        return
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(os, "fork"):
        raise UsageError("--workers above 1 needs SO_REUSEPORT and fork (Linux, BSD, macOS)")
    kind = config.store.kind
    if kind == "memory":
        raise UsageError(
            f"--workers {workers} needs a store that several processes share; the memory "
            "store lives inside one process, so each worker would keep its own events. "
            "Use store: sqlite (the default), postgres, redis or nats, or --workers 1"
        )
    store = open_store(config.store)  # not opened: only its capabilities are asked
    if Capability.MULTI_PROCESS not in store.capabilities:
        raise UsageError(
            f"--workers {workers}: the {kind} store cannot be shared by several processes"
        )


def bind_all(
    host: str, port: int, count: int, bind: Callable[..., socket.socket]
) -> list[socket.socket]:
    """`count` sockets on one address with SO_REUSEPORT (port 0: one port picked for all).

    A socket without SO_REUSEPORT is bound first: another daemon's workers already on the
    address make that fail, as one daemon's socket would, rather than share their port.
    """
    probe = bind(host, port)
    port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        probe.close()
        for _ in range(count):
            sockets.append(bind(host, port, reuse_port=True))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def supervise(
    sockets: list[socket.socket],
    serve_worker: Callable[[socket.socket, int, tuple[int, int]], int],
) -> int:
    """Fork a worker per socket, forward stop signals to them, and wait for all; the exit code.

    `serve_worker(socket, supervisor pid, (worker number, worker count))` serves in a worker.
    """
    parent = os.getpid()
    children: dict[int, int] = {}  # pid -> worker number
    signalled = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal signalled
        signalled += 1
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    stops = (signal.SIGTERM, signal.SIGINT)
    # held back while forking: a signal then would find a worker with the supervisor's handler
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    previous = {sig: signal.signal(sig, forward) for sig in stops}
    try:
        for number, sock in enumerate(sockets):
            pid = os.fork()
            if pid == 0:
                _worker(number, sock, sockets, parent, serve_worker)  # never returns
            children[pid] = number
    finally:
        for sock in sockets:
            sock.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    log.info("workers started", workers=len(children), pids=sorted(children))
    code = 0
    try:
        while children:
            pid, status = os.wait()
            if pid not in children:
                continue
            number = children.pop(pid)
            exit_code = os.waitstatus_to_exitcode(status)
            if exit_code != 0 or not signalled:
                # a worker gone on its own: the address would be served by fewer; stop all
                log.error("worker exited", worker=number, pid=pid, exit_code=exit_code)
                code = 1
                if not signalled:
                    forward(signal.SIGTERM, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _worker(
    number: int,
    sock: socket.socket,
    sockets: list[socket.socket],
    parent: int,
    serve_worker: Callable[[socket.socket, int, tuple[int, int]], int],
) -> None:
    """The forked worker's whole life: serve on `sock`, then leave without the parent's exit."""
    code = 1
    try:
        os.setpgid(0, 0)  # stop signals come once, through the supervisor
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _stop_early)  # until the event loop takes them
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT))
        for other in sockets:
            if other is not sock:
                other.close()
        code = serve_worker(sock, parent, (number, len(sockets)))
    except SystemExit as exc:  # stopped before serving: nothing was in flight
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        log.exception("worker failed", worker=number)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stop_early(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


async def watch_parent(parent: int, stop: Callable[[], None]) -> None:
    """Call `stop` once the supervisor `parent` is gone (killed with -9: no signal came)."""
    while os.getppid() == parent:  # noqa: ASYNC110 (no event tells of a parent's death)
        await asyncio.sleep(ORPHAN_CHECK)
    log.warning("the supervisor is gone: shutting down", supervisor=parent)
    stop()


def run_worker(serve: Callable[[], Coroutine[Any, Any, None]], loop_factory: Any) -> int:
    """Serve in this (forked) worker; a CatgadError is one line on stderr, as `catgad run`."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve())
    except CatgadError as exc:
        print(f"catgad run: worker {os.getpid()}: {exc.detail}", file=sys.stderr)
        return exc.exit_code
    return 0
