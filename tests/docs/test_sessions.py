"""Every ```console session in README.md and docs/ runs against a real daemon: the docs
cannot drift. One daemon per page and setup, shared by that page's blocks."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.docs.sessions import PAGES, Session, all_sessions, as_pattern, sessions
from tests.helpers.daemon import ORDERS_YAML, REPO, Daemon

EXAMPLES = REPO / "config" / "examples"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@contextmanager
def orders(folder: Path) -> Iterator[Daemon]:
    with Daemon(ORDERS_YAML, folder, env={"CATGAD_REDIS_PROJECTIONS": "false"}) as daemon:
        yield daemon


@contextmanager
def order_saga(folder: Path) -> Iterator[Daemon]:
    """The order saga example and its payments webhook (examples/webhooks/python)."""
    from tests.handlers.servers import WebhookServer

    with WebhookServer.python_example(SECRET) as payments:
        env = {"PAYMENTS_WEBHOOK_URL": payments.url("/payment"), "ORDERS_WEBHOOK_SECRET": SECRET}
        with Daemon(EXAMPLES / "order-saga.yaml", folder, env=env) as daemon:
            yield daemon


@contextmanager
def fulfilment(folder: Path) -> Iterator[Daemon]:
    with Daemon(EXAMPLES / "fulfilment.yaml", folder) as daemon:
        yield daemon


SETUPS = {"orders": orders, "order-saga": order_saga, "fulfilment": fulfilment}


def replay(session: Session, daemon: Daemon, *, settle: float = 10) -> None:
    """Run each command against `daemon` and compare with the page's answer. A GET is asked
    again for up to `settle` seconds until it answers so (a read model, a saga or a process
    moves on after the request that started it); a POST is sent once."""
    address = f"{daemon.host}:{daemon.port}"
    for command, expected in session.pairs:
        assert command.startswith("curl "), (session.name, command)
        deadline = time.monotonic() + (settle if "XPOST" not in command else 0)
        while True:
            done = subprocess.run(
                command.replace("localhost:8080", address),
                shell=True, capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert done.returncode == 0, (session.name, command, done.stderr)
            if as_pattern(expected).fullmatch(done.stdout.strip()):
                break
            assert time.monotonic() < deadline, (
                f"{session.name}: {command}\nthe page says:\n{expected}\n"
                f"the daemon says:\n{done.stdout}"
            )
            time.sleep(0.1)


def test_every_console_block_is_run_or_says_why_not() -> None:
    found = all_sessions()
    assert len(found) >= 4, "the docs' sessions went missing"
    for session in found:
        assert session.setup or session.reason, (
            f"{session.name}: a ```console block needs <!-- session: SETUP --> "
            "or <!-- not run: why --> before it"
        )
        if session.setup:
            assert session.setup in SETUPS, (session.name, session.setup, sorted(SETUPS))
            assert session.pairs, f"{session.name}: a session without commands"


def test_the_marker_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```console\n$ curl -s localhost:8080/healthz\nok\n```\n")
    (unmarked,) = sessions(page)
    assert not unmarked.setup and not unmarked.reason
    page.write_text("<!-- not run: needs a browser -->\n```console\n$ true\n\n```\n")
    assert sessions(page)[0].reason == "needs a browser"


RUN = {page: [s for s in sessions(page) if s.setup] for page in PAGES}


@pytest.mark.parametrize(
    "page", [p for p, found in RUN.items() if found], ids=lambda p: str(p.relative_to(REPO))
)
def test_the_page_sessions_are_what_the_daemon_answers(page: Path, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to replay the docs' sessions")
    with ExitStack() as stack:
        daemons: dict[str, Daemon] = {}
        for session in RUN[page]:
            if session.setup not in daemons:
                folder = tmp_path / session.setup
                folder.mkdir()
                daemons[session.setup] = stack.enter_context(SETUPS[session.setup](folder))
            replay(session, daemons[session.setup])
