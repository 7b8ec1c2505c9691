"""The dashboard of a service with tokens: a browser signs in with a token (kept in a session
cookie for /ui only, sent as `Authorization: Bearer` by the page's scripts), sees the actions
its scopes allow, acts under its own name; without a token it gets nothing but the sign-in
page, and the API never takes the cookie for a token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from catgad.http.access import COOKIE
from tests.helpers.daemon import Daemon
from tests.ui.conftest import TOKENS, Console, dead_letter, in_review, sync_api

expect = sync_api.expect
pytestmark = pytest.mark.slow


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def sign_in(page: Any, daemon: Daemon, token: str) -> None:
    page.goto(f"{daemon.url}/ui")
    expect(page).to_have_url(f"{daemon.url}/ui/signin?reason=unauthorized")
    page.locator("#token").fill(token)
    page.locator("button[type=submit]").click()


def test_a_reader_signs_in_sees_and_cannot_act(
    guarded_shop: Daemon, open_page: Callable[[], Any], console: Console, shots: Path
) -> None:
    with guarded_shop.client(headers=bearer("ops")) as client:
        order = in_review(client)
    page = open_page()
    page.goto(f"{guarded_shop.url}/ui#/inbox")  # the fragment survives the redirect
    expect(page).to_have_url(f"{guarded_shop.url}/ui/signin?reason=unauthorized#/inbox")
    expect(page.locator("#message")).to_have_text("Sign in with a token to see the dashboard.")
    page.screenshot(path=shots / "signin.png")

    console.allow("status of 401")  # the sign-in page's check of the wrong token, below
    page.locator("#token").fill("not-a-token")
    page.locator("button[type=submit]").click()
    expect(page.locator("#message")).to_have_text("This token is not known.")

    page.locator("#token").fill(TOKENS["reader"])
    page.locator("button[type=submit]").click()
    expect(page).to_have_url(f"{guarded_shop.url}/ui#/inbox")
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#who")).to_have_text("reader (read)")
    entry = page.locator(f'li.item.kind-approval[data-key*="{order}"]')
    approve = entry.locator("button[data-action=approve]")
    expect(approve).to_be_disabled()
    expect(approve).to_have_attribute("title", "needs the scope approve")
    cookie = {c["name"]: c for c in page.context.cookies()}[COOKIE]
    assert (cookie["path"], cookie["sameSite"], cookie["expires"]) == ("/ui", "Strict", -1)

    page.locator("#signout").click()
    expect(page).to_have_url(f"{guarded_shop.url}/ui/signin")
    page.goto(f"{guarded_shop.url}/ui")
    expect(page).to_have_url(f"{guarded_shop.url}/ui/signin?reason=unauthorized")


def test_ops_act_under_their_own_name(guarded_shop: Daemon, open_page: Callable[[], Any]) -> None:
    with guarded_shop.client(headers=bearer("ops")) as client:
        order = in_review(client)
        _, letter = dead_letter(client)
        page = open_page()
        sign_in(page, guarded_shop, TOKENS["ops"])
        page.wait_for_selector("body[data-ready]")
        entry = page.locator(f'li.item.kind-approval[data-key*="{order}"]')
        entry.locator("input.comment").fill("fine")
        entry.locator("button[data-action=approve]").click()
        expect(entry).to_have_count(0)
        history = client.get(f"/processes/Fulfilment/{order}").json()["history"]
        (decided,) = [h for h in history if h["decision"] == "Decided"]
        assert (decided["token"], decided["comment"]) == ("ops", "fine")

        button = page.locator(f'button[data-action=skip][title*="{letter}"]')
        button.click()  # its confirm() accepted
        expect(button).to_have_count(0)
        letters = client.get("/projections/unit_prices").json()["dead_letters"]["items"]
        assert letter not in {x["event_id"] for x in letters}


def test_without_a_token_nothing_but_the_sign_in_page(guarded_shop: Daemon) -> None:
    with httpx.Client(base_url=guarded_shop.url, timeout=10) as client:
        html = {"Accept": "text/html"}
        moved = client.get("/ui", headers=html)
        assert (moved.status_code, moved.headers["location"]) == (
            303,
            "/ui/signin?reason=unauthorized",
        )
        problem = client.get("/ui")
        assert problem.status_code == 401 and problem.headers["www-authenticate"].startswith(
            "Bearer"
        )
        assert client.get("/ui/static/app.js").status_code == 401
        assert client.get("/inbox").status_code == 401
        signin = client.get("/ui/signin")
        assert signin.status_code == 200 and "sha256-" in signin.headers["content-security-policy"]
        assert TOKENS["reader"] not in signin.text

        client.cookies.set(COOKIE, TOKENS["reader"], path="/ui")
        assert client.get("/ui/static/app.js").status_code == 200
        page = client.get("/ui", headers=html)
        assert page.status_code == 200 and '"token": "reader"' in page.text
        assert client.get("/inbox").status_code == 401, "the API never reads the cookie"
        assert client.get("/inbox", headers=bearer("reader")).status_code == 200
