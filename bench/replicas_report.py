"""The report of bench.replicas: the table, the CPU ceiling and where scaling stops, in words."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

from bench.workload import Workload, percentile


@dataclass(frozen=True, slots=True)
class Setup:
    replicas: int
    route: str  # "auto" (over the bus) or "local"
    partitions: int = 8

    @property
    def label(self) -> str:
        how = "routed over NATS" if self.route != "local" else "local (no bus hop)"
        return f"{self.replicas} replica{'s' if self.replicas > 1 else ''}, {how}"


@dataclass(slots=True)
class Run:
    seconds: float
    commands: int
    latencies_ns: list[int]
    cpu: dict[str, float] = field(default_factory=dict)  # process kind -> CPU seconds
    scripts: int = 0  # EVALSHA calls Redis served in the run: appends (refused too), leases

    @property
    def rate(self) -> float:
        return self.commands / self.seconds


PROCESSES = ("replicas", "load generator", "nats-server", "redis-server")


@dataclass(slots=True)
class Row:
    setup: Setup
    rates: list[float]
    p50_ms: float
    p99_ms: float
    cpu_ms: dict[str, float]  # process kind -> CPU ms per command
    busy: float  # cores busy on average during the runs
    scripts: float  # Redis scripts per command: appends (refused ones too), leases, checkpoints

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def ceiling(self) -> float:
        """Commands per second the machine's cores allow at this CPU cost per command."""
        total = sum(self.cpu_ms.values())
        return (os.cpu_count() or 1) * 1000 / total if total else 0.0


def rows(results: dict[Setup, list[Run]]) -> list[Row]:
    out = []
    for setup, runs in results.items():
        commands = sum(r.commands for r in runs)
        cpu: dict[str, float] = dict.fromkeys(PROCESSES, 0.0)
        for r in runs:
            for name, seconds in r.cpu.items():
                cpu["replicas" if name.startswith("replica") else name] += seconds
        latencies = [lat for r in runs for lat in r.latencies_ns]
        out.append(
            Row(
                setup,
                [r.rate for r in runs],
                percentile(latencies, 50) / 1e6,
                percentile(latencies, 99) / 1e6,
                {k: 1000 * v / commands for k, v in cpu.items()},
                sum(cpu.values()) / sum(r.seconds for r in runs),
                sum(r.scripts for r in runs) / commands,
            )
        )
    return out


def why(table: list[Row], cores: int) -> list[str]:
    """Where scaling stops, in words, from the measured rows."""
    by = {(r.setup.replicas, r.setup.route, r.setup.partitions): r for r in table}
    out = ["## Where it stops scaling, and why", ""]
    local1, local2 = by[(1, "local", 8)], by[(2, "local", 8)]
    out.append(
        f"- Without the bus hop a second replica adds {local2.rate / local1.rate - 1:.0%}: "
        f"one replica is one Python process, busy on one core ({local1.busy:.2f} of {cores} "
        f"cores busy in all); two reach {local2.busy:.2f} of {cores}, "
        f"{_share(local2.rate, local2.ceiling)} of the CPU ceiling: the second core, shared "
        "with the client, Redis and NATS, is all there is to add."
    )
    for parts in (8, 32):
        one, two = by[(1, "auto", parts)], by[(2, "auto", parts)]
        out.append(
            f"- Routed, {parts} partitions: a command costs {sum(one.cpu_ms.values()):.2f} ms "
            f"of CPU in all with one replica and {sum(two.cpu_ms.values()):.2f} ms with two, "
            f"so two replicas give {two.rate / one.rate:.2f}x one "
            f"({_share(two.rate, two.ceiling)} of their CPU ceiling)."
        )
    two = by[(2, "auto", 8)]
    out += [
        "- Why a second routed replica costs CPU instead of adding it: NATS gives each "
        "partition's next command to whichever member's pull is waiting, so a stream's "
        "consecutive commands alternate between the replicas. The replica that runs one "
        "often holds a cached state the other has moved past: its append is refused and the "
        f"command decided again (Redis scripts per command {two.scripts:.2f} against "
        f"{by[(1, 'auto', 8)].scripts:.2f}); and every command's six NATS messages (the publish "
        "and its ack, a pull and its delivery, the reply, the ack) now cross between more "
        "processes competing for the same "
        f"{cores} cores (NATS CPU per command {two.cpu_ms['nats-server']:.2f} ms against "
        f"{by[(1, 'auto', 8)].cpu_ms['nats-server']:.2f}).",
        "- So on this machine replicas buy availability (a killed replica's streams move "
        "to the other; tests/cluster), not throughput: the load generator, NATS, Redis and "
        "the replicas share two cores. How far replicas with cores of their own (and the "
        "servers elsewhere) scale is not measured here; the routed path costs "
        f"{_times(sum(by[(1, 'auto', 8)].cpu_ms.values()), sum(local1.cpu_ms.values()))} the "
        "CPU of a local command, which bounds what any replica count can do per core.",
    ]
    return out


def _share(rate: float, ceiling: float) -> str:
    return f"{rate / ceiling:.0%}" if ceiling > 0 else "an unmeasured share (runs too short)"


def _times(cost: float, base: float) -> str:
    """`cost` as a multiple of `base`; a run too short for the CPU clock's ticks has none."""
    return f"about {cost / base:.1f}x" if base > 0 else "an unmeasured multiple of (runs too short)"


def report(
    results: dict[Setup, list[Run]], workload: Workload, wall: float, load: tuple[float, float]
) -> str:
    table = rows(results)
    one = {(r.setup.route, r.setup.partitions): r.rate for r in table if r.setup.replicas == 1}
    cores = os.cpu_count() or 1
    lines = [
        "# Replicas: two `catgad run` against one (Redis store, NATS bus)",
        "",
        f"Generated by `python -m bench.replicas` on {cores} cores: {workload.orders_total} "
        f"orders x 3 commands (CreateOrder, PayOrder, ShipOrder), {workload.concurrency} "
        "connections of a raw HTTP/1.1 client spread over the replicas, median of "
        f"{len(next(iter(results.values())))} runs [min-max]. Redis 7 and NATS 2.9 are the "
        "machine's shared servers; the load generator runs on the same cores. Each run's "
        "store is read back (every order holds exactly its 3 events).",
        "",
        "| setup | partitions | cmds/s | x one replica | p50 ms | p99 ms "
        "| CPU ms per command: replicas + client + nats + redis | cores busy "
        "| CPU ceiling cmds/s | Redis scripts per command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        s = row.setup
        per = " + ".join(f"{row.cpu_ms[k]:.2f}" for k in PROCESSES)
        lines.append(
            f"| {s.label} | {s.partitions} | {row.rate:,.0f} [{min(row.rates):,.0f}-"
            f"{max(row.rates):,.0f}] | {row.rate / one[(s.route, s.partitions)]:.2f}x | "
            f"{row.p50_ms:.1f} | {row.p99_ms:.1f} | {per} = {sum(row.cpu_ms.values()):.2f} | "
            f"{row.busy:.2f} of {cores} | {row.ceiling:,.0f} | {row.scripts:.2f} |"
        )
    lines += ["", *why(table, cores)]
    lines += [
        "",
        "CPU ceiling: the cores divided by the CPU all processes spent per command, the "
        "most this machine could do at that cost; a measured rate near it means the run "
        "was CPU-bound. Routed: each command is received by one replica and run by the "
        "member of `<service>-commands` holding its partition (often the other replica), "
        "with a JetStream publish, a pull, an ack and a reply on the way; local: the "
        "receiving replica runs it against the shared store.",
        "",
        "Redis scripts per command: every append is one script, and so are the relay's lease "
        "renewals and checkpoints (the one-replica rows are the baseline). An excess over "
        "the baseline counts commands decided on a state cached by the replica that ran them "
        "while the other replica had moved the stream on: the append is refused, the state "
        "reloaded and the command decided again. The shared Redis has other users too.",
        "",
        f"Total wall time {wall:.0f} s; load average (1 min) {load[0]:.2f} before, "
        f"{load[1]:.2f} after: the machine is shared.",
        "",
    ]
    return "\n".join(lines)
