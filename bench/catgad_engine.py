"""catgad in-process: the example Order config, its SQLite store, the command engine.

`concurrency` asyncio workers each take an order and send its commands to
`CommandEngine.execute` one after the other, as the HTTP layer would; the
store's group commit gathers the appends of concurrent commands into shared
transactions. The loop is uvloop when installed, as in `catgad run`.

Also home of what the HTTP benchmark shares: the benchmark's copy of the
example config (only the store's `synchronous` differs), and the check that
reads the store back after a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.workload import Measurement, Progress, Workload, drive, no_progress, shared, verify
from catgad import heap
from catgad.app.load import load_config
from catgad.model import Config
from catgad.runtime import Runtime
from catgad.store.factory import open_store
from catgad.store.protocol import EventStore

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "examples" / "orders.yaml"
_SYNC_LINE = re.compile(r"^(\s+synchronous:\s*)\S+\s*$", re.MULTILINE)
_REDIS_PREFIX = '"${CATGAD_REDIS_PREFIX:-orders:read:}"'


def bench_config(directory: Path, synchronous: str, example: Path = EXAMPLE) -> Path:
    """A copy of the example config (and the files it includes) with the run's durability.

    The store path stays `${CATGAD_SQLITE_PATH:-...}`: each run gives its own file. The
    SQLite read model lands beside the copy; the Redis one gets a prefix of the run's own
    (a read model kept from another run's store would be ahead of this one's: it fails).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for sibling in example.parent.glob(example.stem + "*.yaml"):
        shutil.copy(sibling, directory / sibling.name)
    target = directory / example.name
    text, count = _SYNC_LINE.subn(rf"\g<1>{synchronous}", target.read_text(encoding="utf-8"))
    if count != 1:
        raise RuntimeError(f"{example}: expected one `synchronous:` line, found {count}")
    if _REDIS_PREFIX in text:
        text = text.replace(_REDIS_PREFIX, f'"catgad-bench:{uuid.uuid4().hex[:8]}:read:"')
    target.write_text(text, encoding="utf-8")
    return target


def load_bench_config(config_path: Path, db_path: Path, synchronous: str) -> Config:
    config = load_config(str(config_path))
    if config.store.kind != "sqlite" or config.store.synchronous != synchronous:
        raise RuntimeError(
            f"{config_path}: store is {config.store.kind}/{config.store.synchronous}, "
            f"expected sqlite/{synchronous}"
        )
    config.store.path = str(db_path)
    return config


def drop_redis_keys(prefix: str) -> None:
    """Delete a run's Redis read model (every key under `prefix`); no Redis: nothing to do."""
    with contextlib.suppress(Exception):  # no server: its projection only waited
        import redis

        client = redis.Redis.from_url(os.environ.get("CATGAD_REDIS_URL", "redis://127.0.0.1"))
        try:
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def drop_redis_read_models(config: Config) -> None:
    """Delete the keys of the config's Redis read models (a benchmark run's own)."""
    from catgad.projections.section import PROJECTIONS

    for projection in PROJECTIONS.of(config).values():
        if projection.target.kind == "redis":
            drop_redis_keys(projection.target.prefix)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when available, the same choice `catgad run` makes."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    return "uvloop" if loop_factory() is not None else "asyncio"


async def count_stored(store: EventStore, workload: Workload) -> int:
    """Events in the store, read back page by page; every order must hold exactly its
    three events, in order, or the count is returned negative."""
    expected = {f"Order-{o.order_id}": o.event_types() for o in workload.orders()}
    seen: dict[str, list[str]] = {}
    total = 0
    after = 0
    while True:
        page = await store.read_all(after=after, limit=1000)
        if not page:
            break
        for event in page:
            total += 1
            if event.subject is not None:
                seen.setdefault(event.subject, []).append(event.type)
        last = page[-1].position
        if last is None:
            raise RuntimeError("read_all returned events without a position")
        after = last
    ok = all(seen.get(stream) == types for stream, types in expected.items())
    return total if ok and len(seen) == len(expected) else -total


async def count_in_file(config: Config, workload: Workload) -> int:
    """Open the run's store afresh (what a restart sees) and count what it holds."""
    store = open_store(config.store)
    await store.open()
    try:
        return await count_stored(store, workload)
    finally:
        await store.close()


async def _run(workload: Workload, config: Config, progress: Progress) -> tuple[float, list[int]]:
    async with Runtime.start(config) as runtime:
        heap.settle()  # as `catgad run` does once started
        engine = runtime.engine

        async def send(command_type: str, data: dict[str, Any]) -> None:
            await engine.execute(command_type, data)

        return await drive(workload, shared(send), progress)


def run(
    workload: Workload,
    synchronous: str,
    workdir: Path,
    *,
    progress: Progress = no_progress,
) -> Measurement:
    config_path = bench_config(workdir / "config", synchronous)
    db_path = workdir / "catgad-engine.db"
    config = load_bench_config(config_path, db_path, synchronous)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            seconds, latencies = runner.run(_run(workload, config, progress))
            counted = runner.run(count_in_file(config, workload))
    finally:
        drop_redis_read_models(config)
    m = Measurement(
        system="catgad engine",
        variant=f"{workload.concurrency} concurrent workers ({loop_name()})",
        synchronous=synchronous,
        commands=len(latencies),
        events=len(latencies),
        seconds=seconds,
        latencies_ns=latencies,
    )
    verify(m, workload, counted)
    return m
