"""A program that is not catgad sends a command over NATS, as docs/operations.md says, and
gets its reply.

Only nats-py and the rules of docs/operations.md: the subject
`<prefix>.commands.<partition>.<stream id>`
(the partition as Kafka's default partitioner picks it), the reply-to and correlation headers,
a CloudEvent body, and the `expectedversion` extension for If-Match.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from catgad.bus.topics import partition_of
from tests.cluster.deployments import PARTITIONS, Deployment
from tests.helpers.daemon import Daemon

pytestmark = [pytest.mark.redis, pytest.mark.nats, pytest.mark.slow]


async def test_a_foreign_producer_gets_result_and_problem_replies(
    redis_nats_deployment: Deployment, tmp_path: Path
) -> None:
    deployment = redis_nats_deployment
    prefix = deployment.env["CATGAD_BUS_PREFIX"]
    daemon = Daemon(deployment.config, tmp_path / "daemon", env=deployment.env)
    await asyncio.to_thread(daemon.start)
    nc = await nats.connect(deployment.env["CATGAD_NATS_URL"])
    try:
        js = nc.jetstream()
        inbox = nc.new_inbox()
        replies: asyncio.Queue[Any] = asyncio.Queue()

        async def on_reply(msg: Any) -> None:
            await replies.put((msg.headers or {}, orjson.loads(msg.data)))

        await nc.subscribe(inbox, cb=on_reply)

        async def send(data: dict[str, Any], **extensions: Any) -> tuple[dict[str, str], Any]:
            stream = f"Counter-{data['counter_id']}"
            subject = f"{prefix}.commands.{partition_of(stream, PARTITIONS)}.{stream}"
            command = {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "urn:test:producer",
                "type": "Add",
                "data": data,
                **extensions,
            }
            correlation = uuid.uuid4().hex
            headers = {"catgad-reply-to": inbox, "catgad-correlation-id": correlation}
            await js.publish(subject, orjson.dumps(command), headers=headers)
            async with asyncio.timeout(10):
                got_headers, reply = await replies.get()
            assert got_headers.get("catgad-correlation-id") == correlation
            assert reply["causationid"] == command["id"]
            return got_headers, reply

        counter = uuid.uuid4().hex[:8]
        _, created = await send({"counter_id": counter, "n": 2})
        assert created["type"] == "catgad.command.result"
        assert created["status"] == 201
        assert created["subject"] == f"Counter-{counter}"
        assert created["data"]["version"] == 1
        assert created["data"]["events"][0]["data"] == {"counter_id": counter, "n": 2}

        _, stale = await send({"counter_id": counter, "n": 1}, expectedversion=0)
        assert stale["type"] == "catgad.command.problem"
        assert stale["status"] == 409
        assert stale["data"]["type"] == "https://catgad.dev/problems/version-conflict"

        _, invalid = await send({"counter_id": counter, "n": "many"})
        assert invalid["status"] == 400
        assert invalid["data"]["type"] == "https://catgad.dev/problems/invalid-payload"

        with daemon.client() as client:  # the same stream over HTTP: one event so far
            assert client.get(f"/streams/Counter-{counter}").json()["version"] == 1
    finally:
        await nc.close()
        await asyncio.to_thread(daemon.stop)
