"""`catgad bench http`: CreateOrder over HTTP under wrk, catgad beside a bare endpoint and a peer.

    catgad bench http                      # 3 interleaved repeats -> bench/RESULTS-http.md
    catgad bench http --quick --output -   # one short repeat, report to stdout

Four servers, each a process of its own on a free loopback port, each loaded
by the same `wrk -t1 -c16` (one wrk thread, 16 keep-alive connections) posting
CreateOrder with a fresh order id per request (bench/http_create.lua):

- **bare**: a Starlette endpoint parsing the same body (bench.http_servers),
  the ceiling of anything served by uvicorn;
- **peer**: the service a user would otherwise write: Starlette over the
  `eventsourcing` library's SQLite persistence with the same Order rules;
- **catgad**: `catgad run config/examples/orders.yaml` as a user runs it, its
  projections on (the `orders` SQLite read model and `customer_totals` in Redis),
  with one worker, and with `--workers` = the machine's cores.

Within a repeat the four run one after the other, each after a short warm-up,
so that noise from other work on the machine spreads over all of them; the
report gives medians (min-max) of requests/s, wrk's p50/p99 latency, the
server's CPU time per request (all its threads and processes, from /proc),
and the ratios the aims are set on. A run with any answer other than 2xx, or
whose store holds fewer orders than were acknowledged, stops the benchmark.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.catgad_engine import drop_redis_keys
from bench.catgad_http import terminate

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "http_create.lua"
ORDERS_YAML = ROOT / "config" / "examples" / "orders.yaml"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS-http.md"
KEPT = "## Where the time goes"  # the hand-written part of RESULTS-http.md, kept on rewrite
START_TIMEOUT = 120.0
AIM_VS_BARE = 0.25
AIM_VS_PEER = 2.0
AIM_CORES = 1.6


class BenchError(RuntimeError):
    """A server did not start or stop cleanly, answered other than 2xx, or lost orders."""


@dataclass(frozen=True, slots=True)
class System:
    key: str
    label: str
    workers: int = 1


@dataclass(slots=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_us: float  # server CPU time per request, every thread and process


@dataclass(slots=True)
class Results:
    systems: list[System]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a catgad supervisor's workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its descendants, all threads."""
    ticks = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """One server process on a free port, ready when GET /readyz answers 200."""

    def __init__(self, system: System, workdir: Path) -> None:
        self.system = system
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = workdir / f"{system.key}-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir(parents=True)
        self.db = self.dir / "store.db"
        self.redis_prefix = f"catgad-bench-http:{uuid.uuid4().hex[:8]}:"
        env = dict(os.environ)
        if system.key == "bare":
            argv = [sys.executable, "-m", "bench.http_servers", "bare", "--port", str(self.port)]
        elif system.key == "peer":
            argv = [sys.executable, "-m", "bench.http_servers", "peer", "--port", str(self.port)]
            argv += ["--db", str(self.db)]
        else:
            argv = [sys.executable, "-m", "catgad.cli.main", "run", str(ORDERS_YAML)]
            argv += ["--listen", f"127.0.0.1:{self.port}", "--log-level", "warning"]
            argv += ["--workers", str(system.workers)]
            env.update(
                CATGAD_SQLITE_PATH=str(self.db),
                CATGAD_READ_SQLITE_PATH=str(self.dir / "read.db"),
                CATGAD_REDIS_PREFIX=self.redis_prefix,
            )
        self.log_path = self.dir / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.system.label} exited with {self.proc.returncode}:\n"
                                 f"{self.log_tail()}")  # fmt: skip
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.system.label} not ready in {START_TIMEOUT:g}s:\n{self.log_tail()}")

    def stop(self) -> int:
        try:
            return terminate(self.proc, 60)
        finally:
            self._log.close()

    def stored(self) -> int:
        """Orders the server's store holds (the bare endpoint stores nothing: -1)."""
        if self.system.key == "bare":
            return -1
        table = "stored_events" if self.system.key == "peer" else "events"
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            where = "" if self.system.key == "peer" else " WHERE type = 'OrderCreated'"
            return int(conn.execute(f"SELECT count(*) FROM {table}{where}").fetchone()[0])

    def clean_redis(self) -> None:
        if self.system.key == "catgad":
            drop_redis_keys(self.redis_prefix)


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str, seconds: float, threads: int, connections: int
) -> tuple[float, int, dict[str, float]]:
    """requests/s, 2xx answers and {p50, p99} (ms) of one wrk run; BenchError on a non-2xx."""
    # a slow answer is an answer: only after 30 s does wrk count it as an error
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "30s",
    ]
    argv += ["-s", str(LUA), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or out}")
    if "Non-2xx" in out or "Socket errors" in out:
        raise BenchError(f"answers other than 2xx, or socket errors, from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    lat = {f"p{m.group(1)}": float(m.group(2)) * _UNITS[m.group(3)] for m in _LATENCY.finditer(out)}
    return rps, count, lat


def measure(system: System, args: argparse.Namespace, workdir: Path) -> Run:
    server = Server(system, workdir)
    try:
        _, warm, _ = wrk(server.url, args.warmup, args.threads, args.connections)
        cpu0 = cpu_seconds(server.proc.pid)
        rps, count, lat = wrk(server.url, args.duration, args.threads, args.connections)
        cpu = cpu_seconds(server.proc.pid) - cpu0
    finally:
        code = server.stop()
        server.clean_redis()
    # uvicorn.run re-raises the SIGTERM it handled (-15); catgad exits 0
    if code != 0 and not (system.key != "catgad" and code == -signal.SIGTERM):
        raise BenchError(f"{system.label} exited with {code} after SIGTERM:\n{server.log_tail()}")
    stored = server.stored()
    acked = warm + count
    # in flight when a wrk run stopped: stored, never counted (at most a request per connection)
    if stored != -1 and not acked <= stored <= acked + 2 * args.connections:
        raise BenchError(f"{system.label}: {acked} CreateOrder acknowledged, {stored} stored")
    return Run(rps, lat.get("p50", 0.0), lat.get("p99", 0.0), count, cpu * 1e6 / max(count, 1))


def median_run(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.requests for r in runs),
        statistics.median(r.cpu_us for r in runs),
    )


def ratios(results: Results) -> list[tuple[str, float, float, bool]]:
    """(what, median of the per-repeat ratios, aim, met) for each aim."""
    runs = results.runs
    cores = (
        next(s.key + str(s.workers) for s in results.systems if s.workers > 1)
        if any(s.workers > 1 for s in results.systems)
        else None
    )
    out = []

    def ratio(a: str, b: str) -> float:
        return statistics.median(x.rps / y.rps for x, y in zip(runs[a], runs[b], strict=True))

    if "catgad1" in runs and "bare" in runs:
        value = ratio("catgad1", "bare")
        out.append(("catgad, 1 worker / bare endpoint", value, AIM_VS_BARE, value >= AIM_VS_BARE))
    if "catgad1" in runs and "peer" in runs:
        value = ratio("catgad1", "peer")
        out.append(
            ("catgad, 1 worker / eventsourcing peer", value, AIM_VS_PEER, value >= AIM_VS_PEER)
        )
    if cores and cores in runs and "catgad1" in runs:
        value = ratio(cores, "catgad1")
        out.append(
            (f"catgad, {cores[6:]} workers / 1 worker", value, AIM_CORES, value >= AIM_CORES)
        )
    return out


def markdown(results: Results, args: argparse.Namespace, command: str) -> str:
    lines = [
        "# catgad over HTTP under wrk: against a bare endpoint and an eventsourcing peer",
        "",
        f"Command: `{command}`",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average (1 min) "
        f"before/after: {' / '.join(f'{x:.2f}' for x in results.load)} on {os.cpu_count()} cores "
        "shared with other work (wrk and every server share them too)",
        f"- load: `wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s` (after "
        f"{args.warmup:g}s of warm-up) posting CreateOrder with a fresh order id each "
        f"(bench/http_create.lua); {args.repeat} repeat(s), the systems interleaved",
        f"- machine: {platform.platform()}, Python {platform.python_version()}; {_wrk_version()}",
        "- catgad: `catgad run config/examples/orders.yaml` (SQLite store, synchronous "
        "full; projections `orders` to SQLite and `customer_totals` to Redis on)",
        "",
        "| system | requests/s (median, min-max) | p50 ms | p99 ms | server CPU µs/request |",
        "| --- | --- | --- | --- | --- |",
    ]
    for system in results.systems:
        runs = results.runs.get(
            system.key + (str(system.workers) if system.key == "catgad" else "")
        )
        if not runs:
            continue
        m = median_run(runs)
        spread = f"{min(r.rps for r in runs):,.0f}-{max(r.rps for r in runs):,.0f}"
        lines.append(
            f"| {system.label} | {m.rps:,.0f} ({spread}) | {m.p50_ms:.2f} | {m.p99_ms:.2f} "
            f"| {m.cpu_us:,.0f} |"
        )
    lines += [
        "",
        "| ratio (median of the per-repeat ratios) | value | aim | met |",
        "| --- | --- | --- | --- |",
    ]
    for what, value, aim, met in ratios(results):
        lines.append(f"| {what} | {value:.2f} | ≥ {aim:g} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        return "wrk"


def systems(args: argparse.Namespace) -> list[System]:
    cores = args.workers or os.cpu_count() or 1
    out = [
        System("bare", "bare Starlette endpoint"),
        System("peer", "eventsourcing peer (Starlette + eventsourcing SQLite)"),
        System("catgad", "catgad, 1 worker", 1),
    ]
    if cores > 1:
        out.append(System("catgad", f"catgad, {cores} workers (all cores)", cores))
    wanted = set(args.only.split(",")) if args.only else None
    return [
        s
        for s in out
        if wanted is None
        or s.key + (str(s.workers) if s.key == "catgad" else "") in wanted
        or s.key in wanted
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_wrk",
        description="wrk against a bare Starlette endpoint, an eventsourcing peer and catgad "
        "(one worker, all cores), interleaved; figures to bench/RESULTS-http.md",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repeats (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--workers", type=int, default=None, help="catgad's all-cores workers")
    parser.add_argument("--only", default=None, help="comma-separated: bare,peer,catgad1,catgad2")
    parser.add_argument("--quick", action="store_true", help="one repeat of 3 s, 1 s warm-up")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="results file ('-': stdout)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stores here")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.repeat = 3.0, 1.0, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "catgad bench http: wrk is not installed (it is the load generator): install it, "
            "e.g. `apt-get install wrk`, and run again",
            file=sys.stderr,
        )
        return 2
    chosen = systems(args)
    results = Results(chosen, load=[os.getloadavg()[0]])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="catgad-bench-http-"))
    try:
        for repeat in range(args.repeat):
            for system in chosen:
                key = system.key + (str(system.workers) if system.key == "catgad" else "")
                run = measure(system, args, workdir)
                results.runs.setdefault(key, []).append(run)
                print(
                    f"[{repeat + 1}/{args.repeat}] {system.label}: {run.rps:,.0f} req/s, "
                    f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, "
                    f"{run.cpu_us:,.0f} µs CPU/req",
                    file=sys.stderr,
                )
    except BenchError as exc:
        print(f"catgad bench http: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results.load.append(os.getloadavg()[0])
    command = "catgad bench http " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(results, args, command.strip())
    if args.output == "-":
        print(text)
        return 0
    output = Path(args.output)
    if output.exists() and KEPT in (old := output.read_text(encoding="utf-8")):
        text += "\n" + old[old.index(KEPT) :]
    output.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
