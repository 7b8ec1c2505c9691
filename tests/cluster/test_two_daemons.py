"""Two `catgad run` daemons on one store and one bus, a few hundred commands from both, kill -9 one.

Both daemons serve the commands topic in one group, so each counter's commands
run on one of them at a time; half of the commands are sent to each daemon, on
the same 20 counters. Once a third are acknowledged the first daemon (the one
relaying events to the bus, and serving half of the partitions) is killed with
SIGKILL, and the load goes on against the other. Afterwards:

- every command was acknowledged (a try that met the dead daemon was sent
  again, same id, to the living one) and its event is stored exactly once;
- each counter's versions run 1..n, and its total is the sum of its commands
  (no lost update);
- a consumer of the test's own, subscribed to the events topic from the start,
  got every stored event at least once, each counter's in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from catgad.envelope import Envelope
from tests.cluster.deployments import Deployment
from tests.cluster.harness import Load, check_delivered, check_stored
from tests.helpers.daemon import Daemon

pytestmark = [pytest.mark.slow]

DELIVERY_WAIT = 30.0  # seconds for the relay (maybe after a takeover) to publish the rest


async def run_two_daemons_and_kill_one(deployment: Deployment, tmp_path: Path) -> None:
    seen: list[Envelope] = []
    progress = asyncio.Event()

    async def consume(event: Envelope) -> None:
        seen.append(event)
        progress.set()

    bus = deployment.make_bus()
    await bus.open()
    daemons = [
        Daemon(deployment.config, tmp_path / name, env=deployment.env, ready_timeout=60)
        for name in ("first", "second")
    ]
    try:
        await bus.subscribe("events", "cluster-test-checker", consume)
        for daemon in daemons:  # one after the other: the first takes the relay lease
            await asyncio.to_thread(daemon.start)

        load = Load(daemons, streams=20, commands=400)

        async def kill_first() -> None:
            assert await asyncio.to_thread(daemons[0].kill) == -9

        await load.run(after=(130, kill_first))
        assert not daemons[0].running and daemons[1].running
        tried_dead = sum(1 for c in load.commands if any("transport" in f for f in c.failures))
        print(f"\n{deployment.name}: outcomes {dict(load.outcomes)}; {tried_dead} met the dead one")

        stored = await deployment.stored([f"Counter-{c}" for c in load.counters])
        check_stored(load, stored)

        wanted = {e.id for events in stored.values() for e in events}
        async with asyncio.timeout(DELIVERY_WAIT):
            while not wanted <= {e.id for e in seen}:
                progress.clear()
                await progress.wait()
        check_delivered(stored, seen)
    except BaseException:
        for daemon in daemons:
            print(f"--- {daemon.workdir.name} log (tail) ---\n{daemon.logs()[-6000:]}")
        raise
    finally:
        await bus.close()
        for daemon in daemons:
            await asyncio.to_thread(daemon.stop)


@pytest.mark.redis
@pytest.mark.nats
async def test_redis_store_nats_bus(redis_nats_deployment: Deployment, tmp_path: Path) -> None:
    await run_two_daemons_and_kill_one(redis_nats_deployment, tmp_path)


@pytest.mark.postgres
@pytest.mark.kafka
async def test_postgres_store_kafka_bus(
    postgres_kafka_deployment: Deployment, tmp_path: Path
) -> None:
    await run_two_daemons_and_kill_one(postgres_kafka_deployment, tmp_path)


@pytest.mark.nats
async def test_nats_store_nats_bus(nats_nats_deployment: Deployment, tmp_path: Path) -> None:
    await run_two_daemons_and_kill_one(nats_nats_deployment, tmp_path)
