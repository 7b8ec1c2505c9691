"""Each store's and bus's page under docs/backends holds a full example config; it is
validated with `catgad validate` and run against the real server: one command, read back.
Each run has its own PostgreSQL schema, Redis prefix, NATS stream, subjects and topics."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.daemon import REPO, Daemon, run_cli
from tests.servers import kafka, nats, postgres, redis

PAGES = REPO / "docs" / "backends"
MARK = "<!-- example config:"


def example(page: Path) -> str:
    text = page.read_text()
    assert MARK in text, f"{page.name}: no example config"
    return text.split(MARK, 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]


async def delete_nats_streams(url: str, run: str) -> None:
    """Every JetStream stream this run made (the store's, its KV buckets', the bus's topics'):
    their names hold the run's token."""
    import nats as nats_client

    nc = await nats_client.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if run in name.lower():
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
    finally:
        await nc.close()


@contextmanager
def server_env(name: str) -> Iterator[dict[str, str]]:
    """The environment the page's `${VAR}`s read: real servers, names of this run's own."""
    run = uuid.uuid4().hex[:10]
    if name == "store-postgres":
        url, schema = postgres.server_url(), postgres.new_schema()
        try:
            yield {"NOTES_POSTGRES_URL": url, "NOTES_POSTGRES_SCHEMA": schema}
        finally:
            postgres.drop_schema(url, schema)
    elif name == "store-redis":
        url, prefix = redis.server_url(), redis.unique_prefix()
        try:
            yield {"NOTES_REDIS_URL": url, "NOTES_REDIS_PREFIX": prefix}
        finally:
            asyncio.run(redis.wipe(url, prefix))
    elif name == "store-nats":
        url = nats.server_url("2.9")
        try:
            yield {
                "NOTES_NATS_URL": url,
                "NOTES_NATS_STREAM": f"DOCS_{run}",
                "NOTES_NATS_SUBJECTS": f"docs{run}.store",
            }
        finally:
            asyncio.run(delete_nats_streams(url, run))
    elif name == "bus-nats":
        url = nats.server_url("2.9")
        try:
            yield {"NOTES_NATS_URL": url, "NOTES_BUS_PREFIX": f"docs{run}"}
        finally:
            asyncio.run(delete_nats_streams(url, run))
    elif name == "bus-kafka":
        yield {"NOTES_KAFKA_URL": kafka.broker_url(), "NOTES_BUS_PREFIX": f"docs{run}"}
    else:
        yield {}


def test_every_store_and_bus_has_its_page() -> None:
    names = {p.stem for p in PAGES.glob("*.md")}
    expected = {f"store-{k}" for k in ("memory", "sqlite", "postgres", "redis", "nats")}
    assert expected | {f"bus-{k}" for k in ("memory", "nats", "kafka")} <= names
    readme = (REPO / "README.md").read_text()
    for name in names:
        assert f"(docs/backends/{name}.md)" in readme, f"the README does not link {name}"


@pytest.mark.parametrize("page", sorted(PAGES.glob("*.md")), ids=lambda p: p.stem)
def test_the_example_config_validates_and_runs(page: Path, tmp_path: Path) -> None:
    config = tmp_path / "notes.yaml"
    config.write_text(example(page))
    kind, backend = page.stem.split("-", 1)
    assert re.search(
        rf"(?m)^{kind}:(\s+{backend}$|\s*\n\s+kind: {backend}$|.*kind: {backend})",
        config.read_text(),
    ), f"{page.name}: its example does not use the {backend} {kind}"
    with server_env(page.stem) as env:
        env["NOTES_SQLITE_PATH"] = str(tmp_path / "notes.db")
        checked = run_cli("validate", str(config), env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with (
            Daemon(config, tmp_path / "run", env=env, ready_timeout=90) as daemon,
            daemon.client() as client,
        ):
            written = client.post("/commands/WriteNote", json={"note_id": "n1", "text": "hello"})
            assert written.status_code == 201, written.text
            assert [e["type"] for e in written.json()["events"]] == ["NoteWritten"]
            read = client.get("/aggregates/Note/n1")
            assert read.status_code == 200, read.text
            assert read.json()["state"] == {"text": "hello"}
            assert read.json()["version"] == 1
