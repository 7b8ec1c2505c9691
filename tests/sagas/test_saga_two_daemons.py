"""Two daemons share a Redis store and a NATS bus; orders are placed on both; the daemon driving
the sagas is killed (kill -9) while they are mid-flight behind a slow payments webhook. The
other takes the saga lease over and every saga ends as on one daemon: completed, or
compensated newest first, no command taking effect twice, a re-sent payment keeping its id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.cluster.deployments import unique
from tests.helpers.daemon import Daemon
from tests.sagas.orders import SAGA_YAML, SECRET, orders, payment_requests, settle_and_check
from tests.servers import nats as nats_servers
from tests.servers import redis as redis_servers
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.nats]

DISTRIBUTED = """
store:
  kind: redis
  url: ${CATGAD_REDIS_URL}
  options: {prefix: "${CATGAD_TEST_PREFIX}"}

bus:
  kind: nats
  url: ${CATGAD_NATS_URL}
  options:
    prefix: ${CATGAD_BUS_PREFIX}
    partitions: 8
    ack_wait: 2
    relay: {lease_ttl: 2, poll_interval: 0.05}

runtime:
  sagas: {lease_ttl: 2, poll_interval: 0.05}
"""


def distributed_config(folder: Path) -> Path:
    text = SAGA_YAML.read_text()
    start = text.index("store:\n  kind: sqlite")
    end = text.index("bus: memory\n") + len("bus: memory\n")
    path = folder / "order-saga.yaml"
    path.write_text(text[:start] + DISTRIBUTED.lstrip() + text[end:])
    return path


async def _wipe(redis_url: str, prefix: str) -> None:
    await redis_servers.wipe(redis_url, prefix)


def driver(daemons: list[Daemon]) -> Daemon:
    """The daemon holding the saga lease, by its log line."""

    def holder() -> Daemon | None:
        for daemon in daemons:
            if "driving saga instances" in daemon.logs():
                return daemon
        return None

    found: Daemon = eventually(holder, 30, "a daemon to drive the sagas")
    return found


def test_two_daemons_one_killed_mid_flight(tmp_path: Path, payments: tuple[str, Path]) -> None:
    url, record = payments
    redis_url, nats_url = redis_servers.server_url(), nats_servers.server_url("2.9")
    prefix = f"{unique('saga')}:"
    env = {
        "PAYMENTS_WEBHOOK_URL": url,
        "ORDERS_WEBHOOK_SECRET": SECRET,
        "CATGAD_REDIS_URL": redis_url,
        "CATGAD_TEST_PREFIX": prefix,
        "CATGAD_NATS_URL": nats_url,
        "CATGAD_BUS_PREFIX": unique("sagabus"),
    }
    config = distributed_config(tmp_path)
    daemons = [Daemon(config, tmp_path / n, env=env, ready_timeout=60) for n in ("a", "b")]
    placed = orders()
    try:
        for daemon in daemons:
            daemon.start()
        first = driver(daemons)
        other = daemons[1] if first is daemons[0] else daemons[0]
        for index, order in enumerate(placed):  # half on each daemon
            with daemons[index % 2].client(timeout=30) as client:
                response = client.post("/commands/PlaceOrder", json=order)
                assert response.status_code == 201, response.text
        eventually(lambda: len(record.read_text().splitlines()) >= 12, 30, "payments in flight")
        first.kill()
        with other.client(timeout=10) as client:
            settle_and_check(client, placed, 90)
        assert "driving saga instances" in other.logs()
    finally:
        for daemon in daemons:
            daemon.stop()
        asyncio.run(_wipe(redis_url, prefix))
    payment_requests(record, placed)
