"""A store or broker that goes away: 503 problems at once, /readyz false, and back when it is back.

Each test runs one `catgad run` (commands routed over the bus to itself, as in
a cluster) against a server process of its own, keeps a stream of commands
going from another thread, stops the server's process, checks that commands
and /readyz answer 503 problems naming the dependency within a few seconds
(never a hang, never another error), starts the same server again (same port,
same data) and waits until commands succeed again. Then every command that was
acknowledged (2xx), before, during or after the outage, is in the store.

This is the daemon's side of the outage contract; the stores' and buses' own side,
which each backend passes unchanged, is tests/contracts/outage.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from catgad.bus.relay import EVENTS_TOPIC
from catgad.bus.topics import kafka_topic
from catgad.engine.routing import COMMANDS_TOPIC
from tests.cluster.deployments import (
    PARTITIONS,
    Deployment,
    nats_nats,
    postgres_kafka,
    postgres_nats,
    redis_nats,
)
from tests.helpers.daemon import Daemon
from tests.servers import kafka as kafka_servers
from tests.servers import nats as nats_servers
from tests.servers import postgres as postgres_servers
from tests.servers import redis as redis_servers
from tests.support.ci import needed
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow]

PROMPT = 5.0  # seconds a refusal may take
# A command in flight when the server goes away waits for its reply until the commands
# timeout (it may be served once the server is back); short here, so that it is prompt too.
COMMAND_TIMEOUT = "4"
RECOVERY = 30.0  # seconds the daemon may take to work again once the server is back


@dataclass
class Traffic:
    """Add commands sent one after another from a thread, each outcome and time recorded."""

    client: httpx.Client
    counter: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acknowledged: list[dict[str, object]] = field(default_factory=list)  # events of 2xx replies
    outcomes: list[tuple[int, float, str]] = field(default_factory=list)  # status, seconds, type
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            body = {"counter_id": self.counter, "n": 1}
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            resp = self.client.post("/commands/Add", json=body, headers=headers)
            took = time.monotonic() - started
            if resp.status_code in (200, 201):
                self.acknowledged.extend(resp.json()["events"])
                self.outcomes.append((resp.status_code, took, ""))
            else:
                self.outcomes.append((resp.status_code, took, resp.json().get("type", "")))
                self._stop.wait(0.05)  # a client's pause before the next command

    def check(self) -> None:
        """Only 2xx and 503 problems, each answered promptly; some of each."""
        statuses = {status for status, _, _ in self.outcomes}
        assert statuses <= {200, 201, 503}, self.outcomes
        assert 503 in statuses and self.acknowledged
        slowest = max(took for _, took, _ in self.outcomes)
        assert slowest < PROMPT, f"a command took {slowest:.1f}s"


def assert_refused(client: httpx.Client, dependency: str) -> None:
    """POST and /readyz both answer a 503 problem naming `dependency`, within PROMPT."""
    for method, path in (("POST", "/commands/Add"), ("GET", "/readyz")):
        started = time.monotonic()
        resp = client.request(method, path, json={"counter_id": "probe", "n": 1})
        took = time.monotonic() - started
        assert took < PROMPT, f"{method} {path} took {took:.1f}s"
        assert resp.status_code == 503, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.headers["retry-after"]
        problem = resp.json()
        assert problem["type"].endswith("/unavailable"), problem
        assert dependency in problem["dependency"], problem


def wait_until_working(client: httpx.Client) -> None:
    def works() -> bool:
        if client.get("/readyz").status_code != 200:
            return False
        resp = client.post("/commands/Add", json={"counter_id": "probe", "n": 1})
        return resp.status_code in (200, 201)

    eventually(works, RECOVERY, "the daemon to work again", interval=0.1)


def wait_for_refusal(client: httpx.Client) -> None:
    """Until /readyz sees the outage (the server's exit is not instant)."""
    eventually(lambda: client.get("/readyz").status_code == 503, PROMPT, "/readyz to say 503")


def outage(
    deployment: Deployment,
    workdir: Path,
    stop: Callable[[], None],
    start: Callable[[], None],
    dependency: str,
) -> None:
    env = {**deployment.env, "CATGAD_COMMAND_TIMEOUT": COMMAND_TIMEOUT}
    with (
        Daemon(deployment.config, workdir, env=env) as daemon,
        daemon.client() as client,
        daemon.client() as traffic_client,
    ):
        with Traffic(traffic_client) as traffic:
            eventually(lambda: len(traffic.acknowledged) >= 5, RECOVERY, "5 acknowledged")
            stop()
            wait_for_refusal(client)
            assert_refused(client, dependency)
            refused = len(traffic.outcomes)
            # the traffic meets the outage too
            eventually(lambda: len(traffic.outcomes) >= refused + 3, PROMPT * 4, "3 refusals")
            start()
            wait_until_working(client)
            before = len(traffic.acknowledged)
            eventually(lambda: len(traffic.acknowledged) >= before + 5, RECOVERY, "5 more acks")
        traffic.check()
        stream = f"Counter-{traffic.counter}"
        stored = client.get(f"/streams/{stream}", params={"limit": 10_000}).json()["events"]
        stored_ids = [e["id"] for e in stored]
        assert len(stored_ids) == len(set(stored_ids))
        missing = {e["id"] for e in traffic.acknowledged} - set(stored_ids)  # type: ignore[misc]
        assert not missing, f"{len(missing)} acknowledged events lost"
        assert [e["streamversion"] for e in stored] == list(range(1, len(stored) + 1))


@pytest.mark.redis
@pytest.mark.nats
def test_redis_store_outage(tmp_path: Path) -> None:
    redis_servers.require_redis_server()
    with redis_servers.PrivateRedis(tmp_path) as redis:  # append-only file, fsync always
        deployment = redis_nats(redis.url, nats_servers.server_url("2.9"))
        try:
            outage(deployment, tmp_path / "daemon", redis.stop, redis.start, "redis")
        finally:
            asyncio.run(deployment.clean_up())


@pytest.mark.redis
@pytest.mark.nats
def test_nats_bus_outage(tmp_path: Path) -> None:
    binary = nats_servers.debian_binary() or nats_servers.wheel_binary()  # the oldest first
    if binary is None:
        needed("NATS server", "no nats-server binary to start a private server")
    (tmp_path / "nats").mkdir()  # the same JetStream store after the restart
    server = nats_servers.NatsServer(binary, store_dir=tmp_path / "nats").start()
    deployment = redis_nats(redis_servers.server_url(), server.url)
    try:
        outage(deployment, tmp_path / "daemon", server.stop, server.start, "nats")
    finally:
        asyncio.run(deployment.clean_up())
        server.close()


@pytest.mark.nats
def test_nats_store_and_bus_outage(tmp_path: Path) -> None:
    """The NATS store and the NATS bus on one server (the newest): both go at once."""
    binary = nats_servers.wheel_binary() or nats_servers.debian_binary()
    if binary is None:
        needed("NATS server", "no nats-server binary to start a private server")
    (tmp_path / "nats").mkdir()  # the same JetStream store after the restart
    server = nats_servers.NatsServer(binary, store_dir=tmp_path / "nats").start()
    deployment = nats_nats(server.url)
    try:
        outage(deployment, tmp_path / "daemon", server.stop, server.start, "nats")
    finally:
        asyncio.run(deployment.clean_up())
        server.close()


@pytest.mark.postgres
@pytest.mark.nats
def test_postgres_store_outage(tmp_path: Path) -> None:
    with postgres_servers.PrivateServer() as pg:
        deployment = postgres_nats(pg.url, nats_servers.server_url("2.9"))
        try:
            outage(deployment, tmp_path / "daemon", pg.stop, pg.start, "postgres")
        finally:
            asyncio.run(deployment.clean_up())


@pytest.mark.postgres
@pytest.mark.kafka
def test_kafka_bus_outage(tmp_path: Path) -> None:
    """Tansu keeps its topics in memory: after the restart the bus must make them again,
    with the configured partitions (8), not the broker's default (4)."""
    with kafka_servers.Tansu() as broker:
        deployment = postgres_kafka(postgres_servers.server_url(), broker.url)
        try:
            outage(deployment, tmp_path / "daemon", broker.stop, broker.start, "kafka")
            prefix = deployment.env["CATGAD_BUS_PREFIX"]
            names = [kafka_topic(prefix, t) for t in (COMMANDS_TOPIC, EVENTS_TOPIC)]
            counts = asyncio.run(kafka_servers.topic_partitions(broker.url, names))
            assert counts == dict.fromkeys(names, PARTITIONS), counts
        finally:
            asyncio.run(deployment.clean_up())
