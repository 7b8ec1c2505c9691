"""Handler benchmark: one command decided by a YAML rule, a Python plugin and a Node.js webhook.

    python -m bench.handlers                  # full run -> bench/RESULTS-handlers.md
    python -m bench.handlers --quick --output -

The command is the orders example's gift note: the same decision written three
ways (a `require`/`emit` rule, the example plugin's `gift-note` entry point, and
examples/webhooks/node/server.js, which verifies each Standard Webhooks
signature with the official npm package). All run through the same
CommandEngine on a memory store, so the differences are the handlers' alone.
In the same run, the webhook's own HTTP round trip is measured bare: its
keep-alive pool, at the same concurrency, POSTing the same bytes to the same
Node.js process, at a path that answers a constant event without verifying.
The same handler code also sends the signed command to that path, which
isolates what catgad adds (signing, the hop, reading and checking the reply)
from the handler's own work. The aim: that addition costs no more than the
bare round trip. A last variant gives that aim its floor: the same command through
a handler that does nothing but the bare round trip (no signing, no checks), so
what the engine costs around any handler is told apart from catgad's webhook code.

It runs on the event loop `catgad run` runs on (uvloop when installed), as what
it measures is the daemon's cost; until 2026-11 it ran on asyncio's own loop.
The rule and plugin variants never wait (the memory store does not), so each of
their commands runs start to end with the CPU's caches warm; a command that
waits on a webhook is resumed between other commands' HTTP work, and the same
engine code then takes more time (see RESULTS-handlers.md's floor rows).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from bench.handlers_report import (
    BARE,
    FLOOR,
    HOP,
    PLUGIN,
    RULE,
    VARIANTS,
    WEBHOOK,
    Results,
    Run,
    markdown,
)
from catgad.aggregates.rules import Decision
from catgad.app.load import load_config
from catgad.cli.run import _loop_factory
from catgad.engine.commands import CommandEngine
from catgad.envelope import Envelope
from catgad.handlers.protocol import HandlerReply, HandlerRequest, ReplyCheck
from catgad.handlers.registry import HandlerRegistry
from catgad.handlers.signing import Signer
from catgad.handlers.webhook import WebhookHandler, message_id
from catgad.model import Config
from catgad.store.memory import MemoryStore

REPO = Path(__file__).resolve().parent.parent
NODE_EXAMPLE = REPO / "examples" / "webhooks" / "node"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
COMMANDS = {RULE: "NoteByRule", PLUGIN: "NoteByPlugin", WEBHOOK: "NoteByWebhook"}
COMMANDS[HOP] = "NoteByHop"

CONFIG = """
catgad: 1
service: {name: bench-handlers}
store: memory
aggregates:
  Order:
    id: order_id
    initial: {status: none}
    on:
      OrderCreated: {set: {status: "'created'"}}
      GiftNoteAdded: {set: {gift_note: data.note}}
commands:
  NoteByRule:
    aggregate: Order
    schema: &note
      type: object
      required: [order_id, note]
      properties: {order_id: {type: string}, note: {type: string, maxLength: 200}}
    require:
      - rule: state.status != 'shipped' && state.status != 'cancelled'
        message: too late for a gift note
    emit:
      - event: GiftNoteAdded
        data: {order_id: data.order_id, note: data.note}
  NoteByPlugin: {aggregate: Order, schema: *note, handler: plugin}
  NoteByWebhook: {aggregate: Order, schema: *note, handler: webhook}
  NoteByHop: {aggregate: Order, schema: *note, handler: hop}
events:
  OrderCreated:
    schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
  GiftNoteAdded:
    version: 2
    schema:
      type: object
      required: [order_id, note]
      properties: {order_id: {type: string}, note: {type: string}}
    upcasters: {1: {rename: {text: note}}}
handlers:
  plugin: {kind: plugin, entry_point: gift-note}
  webhook: {kind: webhook, url: "URL/gift-note", secret: SECRET, timeout: 10, retries: 0}
  hop: {kind: webhook, url: "URL/bare", secret: SECRET, timeout: 10, retries: 0}
"""


# -- the Node.js server ------------------------------------------------------------------------


def node_modules() -> Path:
    lock = (NODE_EXAMPLE / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "catgad-bench"
    target = cache / f"node-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (target / "node_modules" / "standardwebhooks").exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(NODE_EXAMPLE / name, target / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target, check=True
        )
    return target / "node_modules"


def start_node() -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PORT": "0", "ORDERS_WEBHOOK_SECRET": SECRET}
    env["NODE_PATH"] = str(node_modules())
    proc = subprocess.Popen(
        ["node", str(NODE_EXAMPLE / "server.js")], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://[0-9.]+:[0-9]+", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"the Node.js server did not start: {line!r}")
    return proc, match.group(0)


# -- measuring ---------------------------------------------------------------------------------


async def timed(
    work: list[Callable[[], Awaitable[object]]], concurrency: int
) -> tuple[float, list[float]]:
    """Run the calls with `concurrency` workers; (wall seconds, each call's seconds)."""
    queue = iter(work)
    latencies: list[float] = []

    async def worker() -> None:
        for call in queue:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def run_of(wall: float, latencies: list[float]) -> Run:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Run(len(latencies) / wall, statistics.median(ordered) * 1000, p99 * 1000)


async def measure_command(
    config: Config, handlers: HandlerRegistry, command: str, orders: int, notes: int, c: int
) -> Run:
    store = MemoryStore()
    await store.open()
    created = [Envelope(type="OrderCreated", data={"order_id": f"o{i}"}) for i in range(orders)]
    for i, event in enumerate(created):
        await store.append(f"Order-o{i}", [event], expected_version=0, command_id=f"seed-{i}")
    engine = CommandEngine(config, store, handlers=handlers)
    # each worker takes an order and sends its notes one after the other, waiting for each
    # answer, as a client would (and as bench/workload.py does)
    latencies: list[float] = []

    async def notes_of(order_id: str) -> None:
        latencies.extend(await _notes(engine, command, order_id, notes))

    wall, _ = await timed([functools.partial(notes_of, f"o{i}") for i in range(orders)], c)
    total = len(await store.read_all(limit=orders * (notes + 1) + 1))
    if total != orders * (notes + 1):
        raise AssertionError(f"{command}: {total} events stored, expected {orders * (notes + 1)}")
    await store.close()
    return run_of(wall, latencies)


async def _notes(engine: CommandEngine, command: str, order_id: str, notes: int) -> list[float]:
    out = []
    for n in range(notes):
        started = time.perf_counter()
        result = await engine.execute(command, {"order_id": order_id, "note": f"note {n}"})
        out.append(time.perf_counter() - started)
        assert result.events[0].type == "GiftNoteAdded"
    return out


class FloorHandler:
    """The bare round trip as a command handler: the webhook's pool POSTs the same bytes to
    the bare path, and the reply is taken as one constant event without any check."""

    kind = "webhook"

    def __init__(self, webhook: WebhookHandler, base: str) -> None:
        self.name = "floor"
        self._pool = webhook.pool
        self._target = webhook.pool.target(base + "/bare")
        request = HandlerRequest(
            Envelope(type="NoteByWebhook", data={"order_id": "o1", "note": "note 1"}),
            {"status": "created"},
            1,
        )
        self._body = orjson.dumps(request.body())
        self._headers = Signer([SECRET]).header_values("msg_bench", self._body)

    async def __call__(self, request: HandlerRequest) -> HandlerReply:
        _, content = await self._pool.post(self._target, self._body, self._headers)
        orjson.loads(content)
        data = {"order_id": request.command.data["order_id"], "note": "bare"}
        return HandlerReply([Decision("GiftNoteAdded", data)])

    async def close(self) -> None:
        return None


async def measure_bare(handler: WebhookHandler, base: str, count: int, c: int) -> Run:
    """The webhook's own connection pool POSTing the same bytes to the same process, at a
    path answered without verifying or deciding: the round trip alone."""
    request = HandlerRequest(
        Envelope(type="NoteByWebhook", data={"order_id": "o1", "note": "note 1"}),
        {"status": "created"},
        1,
    )
    body = orjson.dumps(request.body())
    headers = Signer([SECRET]).header_values("msg_bench", body)
    target = handler.pool.target(base + "/bare")

    async def post() -> None:
        _, content = await handler.pool.post(target, body, headers)
        orjson.loads(content)

    await timed([post for _ in range(200)], c)  # warm the pool
    wall, latencies = await timed([post for _ in range(count)], c)
    return run_of(wall, latencies)


def per_call(fn: Callable[[], object], n: int = 20000) -> float:
    """Microseconds one call of `fn` takes, on average over `n`."""
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def measure_parts(config: Config) -> dict[str, float]:
    """What a webhook call does besides the round trip, piece by piece (microseconds)."""
    command = Envelope(
        type="NoteByHop", data={"order_id": "o1", "note": "note"}, subject="Order-o1"
    )
    request = HandlerRequest(command, {"status": "created"}, 1)
    body = orjson.dumps(request.body())
    check = ReplyCheck("hop", config.events)
    reply = b'{"events":[{"type":"GiftNoteAdded","data":{"order_id":"bare","note":"bare"}}]}'
    one, two = Signer([SECRET]), Signer([SECRET, SECRET])
    return {
        "request body (CloudEvent, state, JSON)": per_call(lambda: orjson.dumps(request.body())),
        "webhook-id": per_call(lambda: message_id(request)),
        "signature, one secret": per_call(lambda: one.header_values("msg_x", body)),
        "signatures, two secrets (rotation)": per_call(lambda: two.header_values("msg_x", body)),
        "reply parsed and checked against the schema": per_call(
            lambda: check.reply(orjson.loads(reply))
        ),
    }


async def benchmark(args: argparse.Namespace, base: str) -> Results:
    workdir = Path(tempfile.mkdtemp(prefix="catgad-bench-handlers-"))
    text = CONFIG.replace('"URL', f'"{base}').replace("SECRET", SECRET)
    path = workdir / "handlers.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    config = load_config(path)
    results = Results(load=[os.getloadavg()[0]])
    count = args.orders * args.notes
    for repeat in range(args.repeat):
        handlers = HandlerRegistry.from_config(config)
        try:
            await measure_command(config, handlers, "NoteByWebhook", 20, 2, args.concurrency)
            turn = repeat % len(VARIANTS)
            order = VARIANTS[turn:] + VARIANTS[:turn]  # interleaved, rotated
            for variant in order:
                webhook = handlers["webhook"]
                assert isinstance(webhook, WebhookHandler)
                if variant == BARE:
                    run = await measure_bare(webhook, base, count, args.concurrency)
                elif variant == FLOOR:
                    floor = HandlerRegistry({**handlers, "hop": FloorHandler(webhook, base)})
                    run = await measure_command(
                        config, floor, COMMANDS[HOP], args.orders, args.notes, args.concurrency
                    )
                else:
                    run = await measure_command(
                        config, handlers, COMMANDS[variant], args.orders, args.notes,
                        args.concurrency,
                    )  # fmt: skip
                results.runs[variant].append(run)
                print(f"repeat {repeat + 1}: {variant}: {run.per_s:,.0f}/s", file=sys.stderr)
        finally:
            await handlers.close()
    results.parts_us = measure_parts(config)
    results.load.append(os.getloadavg()[0])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handlers", description=__doc__)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--notes", type=int, default=4, help="commands per order")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 orders, 1 repeat")
    parser.add_argument("--output", default=str(REPO / "bench" / "RESULTS-handlers.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.orders, args.repeat = 50, 1
    proc, base = start_node()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:  # as `catgad run`
            results = runner.run(benchmark(args, base))
    finally:
        proc.terminate()
        proc.wait(10)
    command = "python -m bench.handlers " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(results, args, command.strip())
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
