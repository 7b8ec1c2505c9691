"""Real PostgreSQL servers for tests: the shared one, a schema per test, and private ones to break.

    url = server_url()                     # the shared server; needed() if it does not answer
    async with postgres_store() as store:  # an opened store in a fresh schema, dropped after
        ...
    with PrivateServer() as srv:           # our own postmaster on a free port: crash it, restart it
        srv.crash(); srv.start()

The shared server is CATGAD_POSTGRES_URL (default postgresql://127.0.0.1:5432/postgres).
A private server is made with initdb and run from the binaries on PATH (or
`pg_config --bindir`), as the `postgres` user when the tests run as root,
because PostgreSQL refuses to run as root. It is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from catgad.store.postgres import PostgresStore
from tests.support.ci import needed
from tests.support.ports import free_port
from tests.support.servers import wait_started

DEFAULT_URL = "postgresql://127.0.0.1:5432/postgres"
_reachable: dict[str, str | None] = {}  # url -> why it is not reachable (None: it is)


def server_url() -> str:
    """The shared server's URL, once it answered; otherwise skip/fail the calling test."""
    url = os.environ.get("CATGAD_POSTGRES_URL", DEFAULT_URL)
    if url not in _reachable:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _reachable[url] = None
        except psycopg.Error as exc:
            _reachable[url] = f"{url}: {exc}"
    why = _reachable[url]
    if why is not None:
        needed("PostgreSQL", why)
    return url


def answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def new_schema() -> str:
    return f"catgad_t_{uuid.uuid4().hex}"


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.asynccontextmanager
async def postgres_store(
    schema: str | None = None, url: str | None = None, **options: Any
) -> AsyncIterator[PostgresStore]:
    """An opened store in its own schema (made fresh unless given); the schema is dropped after."""
    url = url or server_url()
    schema = schema or new_schema()
    options.setdefault("pool_max", 4)  # every engineer's tests share max_connections=100
    store = PostgresStore(url, schema=schema, **options)
    try:
        await store.open()
        try:
            yield store
        finally:
            await store.close()
    finally:
        drop_schema(url, schema)


@contextlib.contextmanager
def schema_on_shared_server() -> Iterator[tuple[str, str]]:
    """(url, schema): a fresh schema name, dropped afterwards, for tests opening stores."""
    url = server_url()
    schema = new_schema()
    try:
        yield url, schema
    finally:
        drop_schema(url, schema)


def _bindir() -> Path | None:
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, check=True, text=True)
        bindir = Path(out.stdout.strip())
        if (bindir / "postgres").exists():
            return bindir
    return None


class PrivateServer:
    """A postmaster of our own, on a free loopback port, with durable (fsync) storage."""

    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            needed("PostgreSQL", "no postgres/initdb binaries on PATH or from pg_config")
        self.bindir = bindir
        # not pytest's tmp_path: it sits in a directory only root may enter
        self.root = Path(tempfile.mkdtemp(prefix="catgad-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as = "postgres" if os.geteuid() == 0 else None  # postgres will not run as root

    def _run_as(self) -> dict[str, Any]:
        return {"user": self._as, "group": self._as} if self._as else {}

    def init(self) -> None:
        if self._as:
            shutil.chown(self.root, self._as, self._as)
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
             "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, cwd=self.root, **self._run_as(),
        )  # fmt: skip

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
             "-c", "max_connections=30", "-c", "shared_buffers=16MB", "-c", "fsync=on"],
            stdout=log, stderr=log, cwd=self.root, **self._run_as(),
        )  # fmt: skip
        log.close()
        wait_started(self.proc, lambda: answers(self.url), f"a private postgres on {self.port}",
                     timeout=timeout, log=self.root / "server.log")  # fmt: skip

    def kill(self) -> None:
        """A crash: see crash()."""
        self.crash()

    def crash(self) -> None:
        """Immediate shutdown (SIGQUIT): like a crash, recovery from the WAL on the next start."""
        self._signal(signal.SIGQUIT)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, a checkpoint is written."""
        self._signal(signal.SIGINT)

    def _signal(self, sig: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> PrivateServer:
        try:
            self.init()
            self.start()
        except BaseException:
            self.crash()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.crash()
        shutil.rmtree(self.root, ignore_errors=True)
