"""Two daemons share a Redis store and a NATS bus; orders are placed on both; the daemon driving
the sagas is killed (kill -9) while they are mid-flight behind a slow payments webhook. The
other takes the saga lease over and every saga ends as on one daemon: completed, or
compensated newest first, no command taking effect twice, a re-sent payment keeping its id."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest
from helpers.daemon import Daemon

from tests.cluster.deployments import unique
from tests.servers import nats as nats_servers
from tests.servers import redis as redis_servers

from .orders import SAGA_YAML, SECRET, expected_undo, orders, wait_for

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

    found: Daemon = wait_for(holder, 30, "a daemon to drive the sagas")
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
        wait_for(lambda: len(record.read_text().splitlines()) >= 12, 30, "payments in flight")
        first.kill()
        with other.client(timeout=10) as client:

            def all_settled() -> bool:
                listed = client.get("/sagas/PlaceOrder").json()["instances"]
                done = [i for i in listed if i["status"] in ("completed", "compensated")]
                return len(done) == len(placed)

            wait_for(all_settled, 90, "every saga to settle on the surviving daemon")
            for order in placed:
                saga = client.get(f"/sagas/PlaceOrder/{order['order_id']}").json()
                undo = expected_undo(order)
                assert saga["status"] == ("completed" if undo is None else "compensated"), saga
                sent = [e["command"] for e in saga["log"] if e["decision"] == "CompensationSent"]
                assert sent == (undo or [])
                for kind in ("Reservation", "Payment", "Shipment", "Order"):
                    stream = client.get(f"/streams/{kind}-{order['order_id']}")
                    if stream.status_code == 404:
                        continue
                    causes = [e["causationid"] for e in stream.json()["events"]]
                    assert len(causes) == len(set(causes)), f"twice in {kind}: {causes}"
        assert "driving saga instances" in other.logs()
    finally:
        for daemon in daemons:
            daemon.stop()
        asyncio.run(_wipe(redis_url, prefix))
    requests: dict[str, set[str]] = defaultdict(set)
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        requests[entry["order_id"]].add(entry["command_id"])
    assert all(len(ids) == 1 for ids in requests.values()), "a re-sent payment had a new id"
    assert len(requests) == len(placed)
