"""The dashboard in a real headless browser: Debian's Chromium driven by Playwright (which
downloads no browser of its own here), against real daemons of tests/ui/shop.yaml, one open
and one with tokens. Each page a test opens fails the test on any console error.

Screenshots go to a temporary folder, or to $CATGAD_SCREENSHOTS when set:

    CATGAD_SCREENSHOTS=docs/screenshots pytest tests/ui     # the pictures in docs/
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api

from tests.helpers.daemon import Daemon
from tests.support.ci import needed

HERE = Path(__file__).parent
SHOP_YAML = HERE / "shop.yaml"
CHROMIUM = os.environ.get("CATGAD_CHROMIUM", "/usr/bin/chromium")
TOKENS = {"reader": "ui-reader-secret", "ops": "ui-ops-secret"}
AUTH = f"""  auth:
    tokens:
      - {{name: reader, secret: "{TOKENS["reader"]}", scopes: [read]}}
      - {{name: ops, secret: "{TOKENS["ops"]}", scopes: [manage, approve, commands, read]}}
"""
LISTEN = "  listen: ${CATGAD_LISTEN:-127.0.0.1:8080}\n"

pytestmark = pytest.mark.slow

sync_api.expect.set_options(timeout=15_000)  # a loaded 2-core machine draws slowly


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, for one module at a time: Playwright's sync API runs an event loop of its
    own while it is open, where pytest-asyncio's tests could not start theirs."""
    if shutil.which(CHROMIUM) is None:
        needed("Chromium", f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The open daemon: no tokens, the dashboard and the API need none."""
    with Daemon(SHOP_YAML, tmp_path_factory.mktemp("ui-open")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def guarded_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The same service with tokens: a reader, and ops who may manage and approve."""
    folder = tmp_path_factory.mktemp("ui-auth")
    text = SHOP_YAML.read_text()
    assert LISTEN in text
    config = folder / "shop.yaml"
    config.write_text(text.replace(LISTEN, LISTEN + AUTH, 1))
    with Daemon(config, folder) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("CATGAD_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Console:
    """What a page said on its console and what it threw, for the no-error check."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []  # substrings of errors a test provokes on purpose

    def allow(self, text: str) -> None:
        self.allowed.append(text)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def open_page(browser: Any, console: Console) -> Iterator[Callable[..., Any]]:
    """open_page(): a fresh browser context and page (its own cookies); every console error
    and uncaught exception of every page opened fails the test at the end."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on(
            "console",
            lambda m: console.errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
        page.on("dialog", lambda d: d.accept())  # the confirm() before skip and rebuild
        return page

    yield make
    for context in contexts:
        context.close()
    assert console.unexpected() == [], "console errors"


def order_id() -> str:
    return f"o-{uuid.uuid4().hex[:10]}"


def until(check: Callable[[], Any], what: str, within: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy; fail saying `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.05)


def post(client: httpx.Client, path: str, body: Any = None) -> Any:
    answer = client.post(path, json=body)
    assert answer.status_code in (200, 201, 202), (path, answer.status_code, answer.text)
    return answer.json()


def saga_at(client: httpx.Client, order: str, *statuses: str, step: str | None = None) -> Any:
    def check() -> Any:
        answer = client.get(f"/sagas/Place/{order}")
        if answer.status_code != 200:
            return None
        body = answer.json()
        if body["status"] in statuses and (step is None or body["step"] == step):
            return body
        return None

    return until(check, f"saga {order} {statuses} {step or ''}")


def waiting_for_payment(client: httpx.Client, amount: int = 3000, **data: Any) -> str:
    """A new order whose saga waits at `pay` (1000 < amount <= 5000 is captured later)."""
    order = order_id()
    body = {"order_id": order, "qty": 2, "amount": amount, "address": "Main St 1", **data}
    post(client, "/commands/PlaceOrder", body)
    log = lambda: client.get(f"/sagas/Place/{order}").json().get("log", [])  # noqa: E731
    until(
        lambda: (
            client.get(f"/sagas/Place/{order}").status_code == 200
            and any(e["decision"] == "StepAccepted" for e in log())
        ),
        f"saga {order} waiting for its payment",
    )
    return order


def capture(client: httpx.Client, order: str, amount: int = 3000) -> None:
    post(client, "/commands/CapturePayment", {"order_id": order, "amount": amount})


def in_review(client: httpx.Client) -> str:
    """A new order of 3000, paid: its Fulfilment instance waits for a person in `review`."""
    order = waiting_for_payment(client)
    capture(client, order)
    until(
        lambda: client.get(f"/processes/Fulfilment/{order}").json().get("approval"),
        f"{order} waiting for approval",
    )
    return order


def failed_saga(client: httpx.Client) -> str:
    """A saga whose shipment is refused and whose stock release is refused too (held)."""
    order = waiting_for_payment(client, address="nowhere")
    post(client, "/commands/HoldStock", {"order_id": order})
    capture(client, order)
    saga_at(client, order, "failed")
    return order


def dead_letter(client: httpx.Client) -> tuple[str, str]:
    """A payment for an order with nothing reserved: unit_prices divides by zero."""
    order = order_id()
    event = post(client, "/commands/CapturePayment", {"order_id": order, "amount": 900})
    event_id: str = event["events"][0]["id"]

    def listed() -> bool:
        letters = client.get("/projections/unit_prices").json()["dead_letters"]["items"]
        return any(letter["event_id"] == event_id for letter in letters)

    until(listed, f"the dead letter of {order}")
    return order, event_id
