"""aiokafka's private parts that the Kafka bus uses (catgad/bus/kafka_consumer.py, kafka.py).

aiokafka asks every metadata request with the broker's auto-creation on and
has no setting for it: the bus replaces the request class that
`aiokafka.client` builds them with, and wraps its clients' `_metadata_update`
(reached through the consumer's `_client`) so that only its own requests turn
auto-creation off; it also calls that client's `force_metadata_update`. There
is no public fallback. pyproject caps aiokafka below the next minor release;
these tests fail loudly when a release moves any of it. What it achieves
(topics made again with the bus's partitions, not the broker's default) is
tested against a real broker in tests/bus/test_bus_kafka.py.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import aiokafka.client
import aiokafka.protocol.metadata as metadata
from aiokafka import AIOKafkaConsumer

from catgad.bus import kafka_consumer

BREAKS = (
    f"aiokafka {version('aiokafka')} changed what catgad/bus/kafka_consumer.py uses of it;"
    " the Kafka bus would let the broker auto-create topics (with its default partitions)"
    " or fail"
)


def test_the_client_module_builds_metadata_requests_with_the_replaced_class() -> None:
    assert aiokafka.client.MetadataRequest is kafka_consumer._MetadataRequest, BREAKS
    source = inspect.getsource(aiokafka.client.AIOKafkaClient._metadata_update)
    assert "MetadataRequest(" in source, BREAKS


def test_the_request_carries_auto_creation_to_the_wire() -> None:
    params = list(inspect.signature(metadata.MetadataRequest.__init__).parameters)
    assert params[:3] == ["self", "topics", "allow_auto_topic_creation"], BREAKS
    token = kafka_consumer._leave_missing.set(True)
    try:
        ours = kafka_consumer._MetadataRequest(["t"])
    finally:
        kafka_consumer._leave_missing.reset(token)
    struct = ours.build(metadata.MetadataRequest_v4)
    assert struct.allow_auto_topic_creation is False, BREAKS
    others = kafka_consumer._MetadataRequest(["t"]).build(metadata.MetadataRequest_v4)
    assert others.allow_auto_topic_creation is True, BREAKS


async def test_a_consumer_has_the_client_the_bus_wraps() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started
    client = consumer._client
    assert isinstance(client, aiokafka.client.AIOKafkaClient), BREAKS
    assert inspect.iscoroutinefunction(client._metadata_update), BREAKS
    params = list(inspect.signature(client._metadata_update).parameters)
    assert params == ["cluster_metadata", "topics"], BREAKS
    assert callable(client.force_metadata_update), BREAKS
    kafka_consumer.no_auto_create(client)
    assert client._metadata_update.__name__ == "leaving_missing", BREAKS
