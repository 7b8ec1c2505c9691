"""Plugin handlers: functions and coroutines, rejections, bad returns, and load-time checks.

The load-time checks run `catgad validate` and `catgad run` on a config whose
plugins come from a real (if tiny) installed distribution: a dist-info
directory with entry points, put on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from catgad import Rejected
from catgad.app.load import load_config
from catgad.engine.commands import CommandEngine
from catgad.errors import BadReply, CommandRejected, HandlerError
from catgad.handlers.plugin import PluginHandler
from tests.handlers.conftest import tickets_yaml
from tests.helpers.daemon import run_cli

Fn = Callable[..., Any]


@asynccontextmanager
async def engine_with(
    tmp_path: Path, fn: Fn, *, blocking: bool = False
) -> AsyncIterator[CommandEngine]:
    """The ticket service with its `triage` handler replaced by the plugin function `fn`."""
    from catgad.store.memory import MemoryStore

    config = load_config(tickets_yaml(tmp_path, "http://unused"), env={})
    handler = PluginHandler("triage", fn, config.events, blocking=blocking)
    store = MemoryStore()
    await store.open()
    engine = CommandEngine(config, store, handlers={"triage": handler})
    await engine.execute("OpenTicket", {"ticket_id": "t1", "title": "printer on fire"})
    try:
        yield engine
    finally:
        await store.close()


def triaged(priority: int = 2) -> list[dict[str, Any]]:
    return [{"type": "TicketTriaged", "data": {"ticket_id": "t1", "priority": priority}}]


async def triage(engine: CommandEngine) -> Any:
    return await engine.execute("Triage", {"ticket_id": "t1"})


async def test_a_function_runs_inline(tmp_path: Path) -> None:
    threads: list[str] = []

    def fn(command: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        threads.append(threading.current_thread().name)
        assert command["type"] == "Triage" and command["data"] == {"ticket_id": "t1"}
        assert state == {"status": "open", "title": "printer on fire"}
        return triaged()

    async with engine_with(tmp_path, fn) as engine:
        result = await triage(engine)
        assert result.events[0].data == {"ticket_id": "t1", "priority": 2}
    assert threads == [threading.main_thread().name]


async def test_a_blocking_function_runs_on_a_thread(tmp_path: Path) -> None:
    threads: list[str] = []

    def fn(command: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        threads.append(threading.current_thread().name)
        return triaged()

    async with engine_with(tmp_path, fn, blocking=True) as engine:
        await triage(engine)
    assert threads and threads[0] != threading.main_thread().name


async def test_a_coroutine(tmp_path: Path) -> None:
    async def fn(command: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return triaged(5)

    async with engine_with(tmp_path, fn) as engine:
        assert (await triage(engine)).events[0].data["priority"] == 5


async def test_rejected_is_a_409_with_the_reason(tmp_path: Path) -> None:
    def fn(command: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        raise Rejected("not during lunch")

    async with engine_with(tmp_path, fn) as engine:
        with pytest.raises(CommandRejected) as caught:
            await triage(engine)
        assert (caught.value.status, caught.value.reason) == (409, "not during lunch")
        assert caught.value.handler == "triage"


@pytest.mark.parametrize(
    ("returned", "detail"),
    [
        (None, "returned null; a plugin returns a list of events"),
        ({"events": []}, "returned an object; a plugin returns a list of events"),
        ([{"type": "Nope"}], "events[0]: unknown event type 'Nope'"),
        (triaged(7), "breaks its schema at /priority: 7 is greater than the maximum of 5"),
    ],
)
async def test_a_bad_return_is_a_502_and_appends_nothing(
    tmp_path: Path, returned: Any, detail: str
) -> None:
    async with engine_with(tmp_path, lambda command, state: returned) as engine:
        with pytest.raises(BadReply) as caught:
            await triage(engine)
        assert caught.value.status == 502 and detail in caught.value.detail
        assert await engine.store.stream_version("Ticket-t1") == 1


async def test_an_exception_is_a_502_without_its_traceback(tmp_path: Path) -> None:
    def fn(command: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        raise KeyError("priority")

    async with engine_with(tmp_path, fn) as engine:
        with pytest.raises(HandlerError) as caught:
            await triage(engine)
        assert caught.value.status == 502
        assert caught.value.detail == "handler 'triage' raised KeyError: 'priority'"


async def test_a_plugin_mutating_its_arguments_changes_nothing(tmp_path: Path) -> None:
    def fn(command: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        state["status"] = "hacked"
        state.clear()
        command["data"]["ticket_id"] = "other"
        return triaged()

    async with engine_with(tmp_path, fn) as engine:
        await triage(engine)
        _, loaded = await engine.aggregate_state("Ticket", "t1")
        assert loaded.state["status"] == "open" and loaded.state["priority"] == 2


# -- load-time checks: a real distribution with entry points on PYTHONPATH ---------------------

ENTRY_POINTS = """
[catgad.handlers]
good = fake_plugins.ok:triage
broken = fake_plugins.broken:triage
wrong-signature = fake_plugins.ok:three_args
not-callable = fake_plugins.ok:CONSTANT
async-upcaster = fake_plugins.ok:async_upcast
"""


def fake_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    dist = site / "fake_plugins-0.1.dist-info"
    pkg = site / "fake_plugins"
    dist.mkdir(parents=True)
    pkg.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("import no_such_module_here\n")
    (pkg / "ok.py").write_text(
        textwrap.dedent(
            """
            CONSTANT = 42

            def triage(command, state):
                return []

            def three_args(command, state, extra):
                return []

            async def async_upcast(event):
                return event["data"]
            """
        )
    )
    return site


def plugin_config(tmp_path: Path, handlers: dict[str, str], upcaster: str | None = None) -> Path:
    text = tickets_yaml(tmp_path, "http://unused").read_text()
    text = text.replace("handler: triage", f"handler: {next(iter(handlers))}")
    text = (
        text.split("handlers:")[0]
        + "handlers:\n"
        + "".join(
            f"  {name}:\n    kind: plugin\n    entry_point: {ep}\n" for name, ep in handlers.items()
        )
    )
    if upcaster is not None:
        text = text.replace(
            "  TicketOpened:\n",
            f"  TicketOpened:\n    version: 2\n    upcasters: {{1: {{handler: {upcaster}}}}}\n",
        )
    path = tmp_path / "plugins.yaml"
    path.write_text(text)
    return path


def test_validate_names_each_unusable_entry_point(tmp_path: Path) -> None:
    config = plugin_config(
        tmp_path,
        {
            "a": "wrong-signature",
            "b": "broken",
            "c": "not-callable",
            "d": "goood",
            "e": "async-upcaster",
        },
        upcaster="e",
    )
    done = run_cli("validate", str(config), env={"PYTHONPATH": str(fake_site(tmp_path))})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[-1] == "5 error(s)"
    got = {line.split(": ", 2)[1]: line.split(": ", 2)[2] for line in lines[:-1]}
    assert got == {
        "handlers.a.entry_point": "entry point 'wrong-signature' (fake_plugins.ok:three_args) "
        "takes (command, state, extra); a command is called as handler(command, state)",
        "handlers.b.entry_point": "entry point 'broken' (fake_plugins.broken:triage) cannot be "
        "imported: ModuleNotFoundError: No module named 'no_such_module_here'",
        "handlers.c.entry_point": "entry point 'not-callable' (fake_plugins.ok:CONSTANT) "
        "is not callable",
        "handlers.d.entry_point": "no entry point 'goood' in group catgad.handlers "
        "(did you mean 'good'?)",
        "handlers.e.entry_point": "entry point 'async-upcaster' (fake_plugins.ok:async_upcast) "
        "is a coroutine; an upcaster runs on every read and must be a plain function",
    }
    first = lines[0].split(":")
    assert first[0] == str(config) and int(first[1]) > 0  # positioned at `entry_point`


def test_run_refuses_to_start_with_a_broken_plugin(tmp_path: Path) -> None:
    config = plugin_config(tmp_path, {"a": "broken"})
    done = run_cli("run", str(config), env={"PYTHONPATH": str(fake_site(tmp_path))})
    assert done.returncode == 1
    assert "handlers.a.entry_point: entry point 'broken'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_good_plugin_validates(tmp_path: Path) -> None:
    config = plugin_config(tmp_path, {"a": "good"})
    done = run_cli("validate", str(config), env={"PYTHONPATH": str(fake_site(tmp_path))})
    assert done.returncode == 0, done.stderr


async def test_the_example_package_entry_points_load_and_run(tmp_path: Path) -> None:
    """The installed example plugin: a coroutine handler found through its entry point."""
    from catgad.handlers.plugin import load

    fn = load("loyalty-points", {"command"})
    assert asyncio.iscoroutinefunction(fn)
    config = load_config(tickets_yaml(tmp_path, "http://unused"), env={})
    handler = PluginHandler("loyalty", fn, config.events)
    from catgad.envelope import Envelope
    from catgad.handlers.protocol import HandlerRequest

    command = Envelope(type="AwardPoints", data={"order_id": "o1"})
    with pytest.raises(CommandRejected, match="points are awarded once the order is paid"):
        await handler(HandlerRequest(command, {"status": "created"}, 1))
    with pytest.raises(BadReply, match="unknown event type 'PointsAwarded'"):
        await handler(HandlerRequest(command, {"status": "paid", "paid": 1200}, 2))
    assert (await handler(HandlerRequest(command, {"status": "paid", "paid": 50}, 2))).events == []
