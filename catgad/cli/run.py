"""`catgad run CONFIG`: serve a config's HTTP API until SIGTERM/SIGINT, then shut down cleanly.

Start-up binds the listening socket before anything else, so a port in use
is one clear line and exit 1. Shutdown stops accepting, lets in-flight
requests finish (their commands are durable before they answer), then closes
the store and exits 0. A second signal skips the wait.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import signal
import socket
import sys
from collections.abc import Callable, Generator

import uvicorn

from catgad import heap
from catgad.app.load import load_config
from catgad.cli import workers
from catgad.errors import (
    ListenError,
    UsageError,
)
from catgad.http.app import create_app
from catgad.model import Config
from catgad.observability import tracing
from catgad.observability.logs import configure_logging, get_logger
from catgad.runtime import Runtime

log = get_logger("catgad.run")

DEFAULT_SHUTDOWN_TIMEOUT = 30.0  # seconds in-flight requests get after a signal


def parse_listen(value: str) -> tuple[str | None, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (host from the config) → (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), int(port_text)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="serve the HTTP API of a config",
        description="Serve the commands, streams and aggregates of CONFIG over HTTP. "
        "SIGTERM or SIGINT shuts down gracefully: in-flight commands finish, the store "
        "is closed, the exit code is 0.",
    )
    parser.add_argument("config", metavar="CONFIG", help="the service's YAML file")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=parse_listen,
        help="address to listen on (default: service.listen of the config); port 0 picks one",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="serve an API without access tokens on an address other than loopback",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="least severe level logged (default info)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes sharing the address and the store, one per core "
        "(default 1; not with the memory store)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help="how long in-flight requests may take after a signal "
        f"(default {DEFAULT_SHUTDOWN_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    config = load_config(args.config)
    try:
        tracing.setup(config.service.name)  # OTEL_TRACES_EXPORTER; imports nothing when off
    except tracing.TracingSetupError as exc:
        raise UsageError(str(exc)) from None
    host, port = config.service.host, config.service.port
    if args.listen is not None:
        host = args.listen[0] or host
        port = args.listen[1]
    if not config.service.auth and not args.insecure and exposed(host):
        raise UsageError(
            f"refusing to listen on {_hostport(host, port)} with no access tokens: the API "
            "would be open to anyone who can reach it. Declare service.auth.tokens "
            "(docs/operations.md, Access), listen on loopback (127.0.0.1), or pass --insecure "
            "to mean it"
        )
    workers.check(config, args.workers)
    if args.workers > 1:
        sockets = workers.bind_all(host, port, args.workers, bind)
        return workers.supervise(
            sockets,
            lambda sock, parent, worker: workers.run_worker(
                lambda: serve(
                    config,
                    sock,
                    shutdown_timeout=args.shutdown_timeout,
                    parent=parent,
                    worker=worker,
                ),
                _loop_factory(),
            ),
        )
    sock = bind(host, port)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(config, sock, shutdown_timeout=args.shutdown_timeout))
    finally:
        sock.close()
    return 0


def exposed(host: str) -> bool:
    """Whether `host` names an address other machines may reach (not loopback). A name that
    does not resolve is not: binding it fails, and says so."""
    if host in ("localhost", "ip6-localhost"):
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: what it resolves to decides
        try:
            infos = socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError):
            return False
        return any(not ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket for uvicorn, or a one-line ListenError; `reuse_port` for one of
    several workers' sockets on one address (catgad.cli.workers)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform != "win32":  # restart right after a crash despite TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {_hostport(host, port)}: {why.lower()}") from None
    sock.set_inheritable(True)
    return sock


async def serve(
    config: Config,
    sock: socket.socket,
    *,
    shutdown_timeout: float,
    parent: int | None = None,
    worker: tuple[int, int] | None = None,
) -> None:
    """Serve until a signal; `parent`: a worker's supervisor, whose death stops it too;
    `worker`: its (number, count), by which the workers share the background work."""
    async with Runtime.start(
        config, relay=True, projections=True, commands=True, worker=worker
    ) as runtime:
        heap.settle()  # what startup made stays: out of the collector's walks
        app = create_app(runtime)
        uv_config = uvicorn.Config(
            app,
            log_config=None,
            lifespan="on",
            access_log=False,
            server_header=False,
            # X-Forwarded-For/-Proto rewrite the client address and scheme, which nothing
            # here reads: a layer less around every command
            proxy_headers=False,
            timeout_graceful_shutdown=int(shutdown_timeout),
        )
        server = _Server(uv_config, config=config)
        watch = None
        if parent is not None:
            stop = functools.partial(setattr, server, "should_exit", True)
            watch = asyncio.create_task(workers.watch_parent(parent, stop))
        try:
            await server.serve(sockets=[sock])
        finally:
            if watch is not None:
                watch.cancel()
    log.info("stopped", service=config.service.name)


class _Server(uvicorn.Server):
    """uvicorn's server with catgad's start line and signal handling.

    uvicorn re-raises a caught SIGTERM after serving, which would end the
    process with -15; catgad handles the signals on the loop and exits 0.
    """

    def __init__(self, uv_config: uvicorn.Config, *, config: Config) -> None:
        super().__init__(uv_config)
        self._service = config

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            url = f"http://{_hostport(host, port)}"
            log.info(
                f"listening on {url}",
                url=url,
                service=self._service.service.name,
                store=self._service.store.kind,
                config=self._service.path,
            )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        if self.force_exit:
            # uvicorn skips these when forced; left alone they die with tracebacks at loop close
            tasks = list(self.server_state.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.lifespan.shutdown()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        try:
            for sig in handled:
                loop.add_signal_handler(sig, self._on_signal, sig)
        except NotImplementedError:  # Windows: uvicorn's own handling
            with super().capture_signals():
                yield
            return
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.should_exit:
            log.warning("second signal: not waiting for in-flight requests", signal=sig.name)
            self.force_exit = True
        else:
            log.info("shutting down: finishing in-flight requests", signal=sig.name)
            self.should_exit = True


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
