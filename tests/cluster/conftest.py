"""Fixtures of the multi-daemon tests: deployments on the real servers, cleaned up after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.cluster.deployments import CONFIGS, Deployment, nats_nats, postgres_kafka, redis_nats
from tests.servers import kafka as kafka_servers
from tests.servers import nats as nats_servers
from tests.servers import postgres as postgres_servers
from tests.servers import redis as redis_servers


@pytest.fixture
def redis_nats_deployment() -> Iterator[Deployment]:
    # NATS: the shared 2.9 server, the oldest catgad supports
    deployment = redis_nats(redis_servers.server_url(), nats_servers.server_url("2.9"))
    yield deployment
    asyncio.run(deployment.clean_up())


@pytest.fixture
def postgres_kafka_deployment() -> Iterator[Deployment]:
    # Kafka: the session's private Tansu, its topics die with it
    deployment = postgres_kafka(postgres_servers.server_url(), kafka_servers.broker_url())
    yield deployment
    asyncio.run(deployment.clean_up())


@pytest.fixture
def nats_nats_deployment() -> Iterator[Deployment]:
    # NATS: the newest server (a private one), store and bus on it
    deployment = nats_nats(nats_servers.server_url("current"))
    yield deployment
    asyncio.run(deployment.clean_up())


@pytest.fixture
def failover_nats_deployment() -> Iterator[Deployment]:
    # the shared NATS server; the config leaves the bus's failover knobs at their defaults
    deployment = replace(
        redis_nats(
            redis_servers.server_url(),
            nats_servers.server_url("2.9"),
        ),
        config=CONFIGS / "failover-nats.yaml",
    )
    yield deployment
    asyncio.run(deployment.clean_up())


@pytest.fixture
def failover_kafka_deployment() -> Iterator[Deployment]:
    # the session's Tansu; the config leaves the bus's failover knobs at their defaults
    deployment = replace(
        postgres_kafka(postgres_servers.server_url(), kafka_servers.broker_url()),
        config=CONFIGS / "failover-kafka.yaml",
    )
    yield deployment
    asyncio.run(deployment.clean_up())
