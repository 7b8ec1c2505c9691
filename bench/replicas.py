"""Benchmark: one `catgad run` replica against two, sharing a Redis store and a NATS bus.

    python -m bench.replicas                  # full run -> bench/RESULTS-replicas.md
    python -m bench.replicas --quick --output -

The Order workload of the main benchmark (CreateOrder -> PayOrder -> ShipOrder
per order, `--concurrency` orders in flight, a raw HTTP/1.1 keep-alive client,
one connection per worker), sent to one daemon, or to two with the workers
alternating between them. The daemons run the example's Order commands (the
ones decided by rules; no projections, no handlers) against the machine's
shared Redis and NATS servers, on fresh key and subject prefixes removed after.

Rows:
- routed: commands go over the bus (`bus.options.commands.route: auto`): the
  daemon that receives a command sends it to the commands topic keyed by its
  stream, and the member of the group holding that partition runs it. This is
  what makes "one replica at a time per stream" true.
- local (`route: local`): each daemon runs what it receives against the
  shared store, whose optimistic check alone orders concurrent writers: what
  the bus hop costs, and how replicas scale without it.

The same run measures where the CPU goes (from /proc: each daemon, the load
generator, nats-server, redis-server), which is what bounds the figures on a
small machine: the servers and the client share its cores with the replicas.
Each run's store is read back: every order must hold exactly its 3 events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.catgad_engine import EXAMPLE, count_stored, loop_factory
from bench.catgad_http import DaemonError, free_port, raw_sender
from bench.replicas_report import Run, Setup, report
from bench.workload import Send, Sender, Workload, drive
from catgad.store.redis import RedisStore

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "RESULTS-replicas.md"
REDIS_URL = os.environ.get("CATGAD_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("CATGAD_NATS_URL", "nats://127.0.0.1:4222")
TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 60.0


def bench_config(directory: Path, setup: Setup, prefix: str) -> Path:
    """The example's Order commands decided by rules, on Redis + NATS; no projections, handlers."""
    doc = _on_keys(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    commands = {n: c for n, c in doc["commands"].items() if "handler" not in c}
    config: dict[str, Any] = {
        "catgad": 1,
        "service": {"name": f"bench-{prefix}"},
        "store": {"kind": "redis", "url": REDIS_URL, "options": {"prefix": f"{prefix}:"}},
        "bus": {
            "kind": "nats",
            "url": NATS_URL,
            "options": {
                "prefix": prefix,
                "partitions": setup.partitions,
                "commands": {"route": setup.route},
            },
        },
        "aggregates": {"Order": doc["aggregates"]["Order"]},
        "commands": commands,
        "events": doc["events"],
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "replicas.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _on_keys(node: Any) -> Any:
    """PyYAML reads the key `on:` as True (YAML 1.1); catgad's loader, as the word."""
    if isinstance(node, dict):
        return {("on" if k is True else k): _on_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_on_keys(v) for v in node]
    return node


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_pids() -> dict[str, int]:
    """The pids of the shared nats-server and redis-server on their URLs' ports, if found."""
    wanted = {
        "nats-server": NATS_URL.rsplit(":", 1)[-1].split("/")[0],
        "redis-server": REDIS_URL.rsplit(":", 1)[-1].split("/")[0],
    }
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        for name, port in wanted.items():
            if name in text.split(" ", 1)[0] and port in text:
                found.setdefault(name, int(entry.name))
    return found


@contextmanager
def replicas(config: Path, count: int, workdir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            port = free_port()
            log = open(workdir / f"replica-{i}.log", "wb")  # the child writes to it
            argv = [sys.executable, "-m", "catgad.cli.main", "run", str(config)]
            argv += ["--listen", f"127.0.0.1:{port}", "--log-level", "warning"]
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            proc.port = port  # type: ignore[attr-defined]
            procs.append(proc)
            log.close()
            wait_ready(proc, port, workdir / f"replica-{i}.log")
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DaemonError(f"catgad run exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise DaemonError(f"catgad run not ready after {START_TIMEOUT:g}s:\n{log.read_text()}")


def evalsha_calls() -> int:
    """Scripts the shared Redis has run so far (every append is one; other users add noise)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def alternating(ports: list[int]) -> Sender:
    """Each worker's connection goes to the next daemon in turn."""
    turn = iter(range(1 << 30))

    @asynccontextmanager
    async def opened() -> AsyncIterator[Send]:
        port = ports[next(turn) % len(ports)]
        async with raw_sender(port)() as send:
            yield send

    return opened


async def verified(workload: Workload, prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=f"{prefix}:")
    await store.open()
    try:
        counted = await count_stored(store, workload)
    finally:
        await store.close()
    if counted != workload.expected_events:
        raise DaemonError(f"expected {workload.expected_events} events, the store holds {counted}")


async def clean_up(prefix: str) -> None:
    import nats
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.unlink(*keys[i : i + 500])
    finally:
        await client.aclose()
    nc = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix + "__"):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


def measure(setup: Setup, workload: Workload, scratch: Path) -> Run:
    prefix = f"benchrep{uuid.uuid4().hex[:10]}"
    workdir = scratch / prefix
    config = bench_config(workdir, setup, prefix)
    try:
        with replicas(config, setup.replicas, workdir) as procs:
            pids = {f"replica {i + 1}": p.pid for i, p in enumerate(procs)}
            pids.update(server_pids())
            pids["load generator"] = os.getpid()
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            scripts = evalsha_calls()
            sender = alternating([p.port for p in procs])  # type: ignore[attr-defined]
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                seconds, latencies = runner.run(drive(workload, sender))
            cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            scripts = evalsha_calls() - scripts
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(verified(workload, prefix))
    finally:
        with asyncio.Runner() as runner:
            runner.run(clean_up(prefix))
    return Run(seconds, len(latencies), latencies, cpu, scripts)


SETUPS = (
    Setup(1, "local"),
    Setup(2, "local"),
    Setup(1, "auto"),
    Setup(2, "auto"),
    Setup(1, "auto", partitions=32),
    Setup(2, "auto", partitions=32),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, help="orders per run (default 1000, quick 60)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="60 orders, one run of each setup")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="file, or - for stdout")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 1
    args.orders = args.orders or (60 if args.quick else 1000)
    workload = Workload(aggregates=args.orders, concurrency=args.concurrency)
    results: dict[Setup, list[Run]] = {s: [] for s in SETUPS}
    started, load_before = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="catgad-replicas-") as scratch:
        for repeat in range(args.repeat):
            for setup in SETUPS:  # interleaved: noise hits one run of each, not all of one
                run = measure(setup, workload, Path(scratch))
                results[setup].append(run)
                print(f"run {repeat + 1}: {setup.label}, {setup.partitions} partitions: "
                      f"{run.rate:,.0f} cmds/s", file=sys.stderr)  # fmt: skip
    load = (load_before, os.getloadavg()[0])
    text = report(results, workload, time.monotonic() - started, load)
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
