"""The dashboard and the operator inbox in Chromium, against a real open daemon running a saga,
a process and two projections: pages render (screenshots kept), actions taken in the
browser have their effect (checked through the JSON API), the page follows the daemon by
itself, and no page logs a console error (conftest.open_page)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import Daemon
from tests.ui.conftest import (
    capture,
    dead_letter,
    failed_saga,
    in_review,
    order_id,
    post,
    saga_at,
    sync_api,
    until,
    waiting_for_payment,
)

expect = sync_api.expect
pytestmark = pytest.mark.slow


def ready(page: Any, url: str) -> Any:
    page.goto(url)
    page.wait_for_selector("body[data-ready]")
    return page


def item(page: Any, kind: str, key_part: str) -> Any:
    return page.locator(f'li.item.kind-{kind}[data-key*="{key_part}"]')


def test_the_main_pages_render(shop: Daemon, open_page: Callable[[], Any], shots: Path) -> None:
    with shop.client() as client:
        done = waiting_for_payment(client, amount=800)  # captured at once: runs to the end
        saga_at(client, done, "completed")
        review = in_review(client)
        failed = failed_saga(client)
        paid, letter = dead_letter(client)
    page = open_page()

    ready(page, f"{shop.url}/ui")  # the inbox is the first page
    expect(page.locator("h1")).to_have_text("Inbox")
    expect(item(page, "approval", review)).to_contain_text(f"Fulfilment {review} waits")
    expect(item(page, "failed_saga", failed)).to_contain_text("failed to compensate")
    expect(item(page, "dead_letter", "unit_prices")).to_contain_text("division by zero")
    assert int(page.locator("#badge").inner_text()) >= 3
    page.screenshot(path=shots / "inbox.png", full_page=True)

    ready(page, f"{shop.url}/ui#/projections")
    row = page.locator("tr", has=page.locator('a[href="#/projections/orders"]'))
    expect(row).to_contain_text("running")
    page.screenshot(path=shots / "projections.png", full_page=True)
    ready(page, f"{shop.url}/ui#/projections/unit_prices")
    expect(page.locator("table")).to_contain_text("PaymentCaptured")
    assert letter  # listed with its replay and skip buttons
    expect(page.locator("button[data-action=replay]").first).to_be_enabled()

    ready(page, f"{shop.url}/ui#/sagas/Place/{failed}")
    expect(page.locator("h1 .status")).to_have_text("failed")
    expect(page.locator("dd.bad")).to_contain_text("ReleaseStock")
    expect(page.locator("figure.diagram svg")).to_be_visible()
    expect(page.locator("ol.timeline")).to_contain_text("CompensationSent")
    page.screenshot(path=shots / "saga.png", full_page=True)

    ready(page, f"{shop.url}/ui#/processes/Fulfilment/{review}")
    expect(page.locator("section.approval")).to_contain_text("needs the scope approve")
    expect(page.locator("dl.facts")).to_contain_text("review → rejected, due in 48 h")
    # the instance's state is the one drawn highlighted (graphviz's node, filled yellow)
    node = page.locator("figure.diagram svg g.node", has=page.locator("title", has_text="review"))
    assert node.locator('[fill="#ffe08a"]').count() == 1
    expect(page.locator("ol.timeline")).to_contain_text("ApprovalRequested")
    page.screenshot(path=shots / "process.png", full_page=True)

    ready(page, f"{shop.url}/ui#/streams")  # the streams written last, newest first
    page.locator(f'a[href="#/streams/Payment-{paid}"]').click()
    expect(page.locator("h1")).to_contain_text(f"Payment-{paid}")
    expect(page.locator("table")).to_contain_text("PaymentCaptured")
    ready(page, f"{shop.url}/ui#/streams/Order-{done}")
    expect(page.locator("table")).to_contain_text("OrderConfirmed")
    page.screenshot(path=shots / "stream.png", full_page=True)

    ready(page, f"{shop.url}/ui#/sagas/Place")
    page.select_option("select[aria-label=status]", "completed")
    expect(page).to_have_url(f"{shop.url}/ui#/sagas/Place?status=completed")
    # drawn again filtered: the failed saga gone, the completed one there
    expect(page.locator("tbody td .status").filter(has_not_text="completed")).to_have_count(0)
    expect(page.locator(f'a[href="#/sagas/Place/{done}"]')).to_be_visible()
    assert set(page.locator("tbody td .status").all_inner_texts()) == {"completed"}
    expect(page.locator(f'a[href="#/sagas/Place/{failed}"]')).to_have_count(0)


def test_a_saga_finishing_shows_without_a_reload(
    shop: Daemon, open_page: Callable[[], Any]
) -> None:
    with shop.client() as client:
        order = waiting_for_payment(client)
        page = ready(open_page(), f"{shop.url}/ui#/sagas/Place/{order}")
        expect(page.locator("h1 .status")).to_have_text("running")
        page.evaluate("window.sameDocument = true")
        capture(client, order)
        expect(page.locator("h1 .status")).to_have_text("completed")
        expect(page.locator("ol.timeline")).to_contain_text("Completed")
        assert page.evaluate("window.sameDocument") is True  # drawn again, never reloaded


def test_approve_with_a_comment_from_the_inbox(shop: Daemon, open_page: Callable[[], Any]) -> None:
    with shop.client() as client:
        order = in_review(client)
        page = ready(open_page(), f"{shop.url}/ui")
        entry = item(page, "approval", order)
        entry.locator("input.comment").fill("checked by phone")
        entry.locator("button[data-action=approve]").click()
        expect(page.locator("#toast")).to_contain_text("approve")
        expect(entry).to_have_count(0)
        body = client.get(f"/processes/Fulfilment/{order}").json()
        assert (body["state"], body["status"]) == ("approved", "finished")
        decided = [h for h in body["history"] if h["decision"] == "Decided"]
        assert decided == [
            {"decision": "Decided", "at": decided[0]["at"], "outcome": "approve",
             "token": "anonymous", "comment": "checked by phone"}
        ]  # fmt: skip


def test_reject_on_the_process_page(shop: Daemon, open_page: Callable[[], Any]) -> None:
    with shop.client() as client:
        order = in_review(client)
        page = ready(open_page(), f"{shop.url}/ui#/processes/Fulfilment/{order}")
        page.locator("section.approval input.comment").fill("stolen card")
        page.locator("section.approval button[data-action=reject]").click()
        expect(page.locator("h1")).to_contain_text("rejected")
        expect(page.locator("section.approval")).to_have_count(0)
        body = client.get(f"/processes/Fulfilment/{order}").json()
        assert body["state"] == "rejected"
        (decided,) = [h for h in body["history"] if h["decision"] == "Decided"]
        assert (decided["outcome"], decided["comment"]) == ("reject", "stolen card")


def test_retry_a_failed_saga_from_the_inbox(shop: Daemon, open_page: Callable[[], Any]) -> None:
    with shop.client() as client:
        order = failed_saga(client)
        page = ready(open_page(), f"{shop.url}/ui")
        expect(item(page, "failed_saga", order)).to_contain_text("nothing to release")
        post(client, "/commands/UnholdStock", {"order_id": order})  # the fault, fixed
        item(page, "failed_saga", order).locator("button[data-action=retry]").click()
        expect(item(page, "failed_saga", order)).to_have_count(0)
        saga = saga_at(client, order, "compensated")
        assert saga["compensations"] == {"planned": 2, "done": 2}
        state = client.get(f"/aggregates/Reservation/{order}").json()["state"]
        assert state["status"] == "released"


def test_replay_and_skip_dead_letters(shop: Daemon, open_page: Callable[[], Any]) -> None:
    with shop.client() as client:
        fixed, fixed_event = dead_letter(client)
        skipped, skipped_event = dead_letter(client)
        post(client, "/commands/ReserveStock", {"order_id": fixed, "qty": 3})  # now it divides
        page = ready(open_page(), f"{shop.url}/ui")
        first = page.locator("li.item.kind-dead_letter", has_text=f"Payment-{fixed}")
        first.locator("button[data-action=replay]").click()
        expect(first).to_have_count(0)
        assert client.get(f"/read/unit_prices/{fixed}").json()["per_item"] == 300
        second = page.locator("li.item.kind-dead_letter", has_text=f"Payment-{skipped}")
        second.locator("button[data-action=skip]").click()  # confirm() accepted
        expect(second).to_have_count(0)
        still_open = {
            letter["event_id"]
            for letter in client.get("/projections/unit_prices").json()["dead_letters"]["items"]
        }
        assert fixed_event not in still_open and skipped_event not in still_open
        assert client.get(f"/read/unit_prices/{skipped}").status_code == 404


def test_stop_start_and_rebuild_a_projection(shop: Daemon, open_page: Callable[[], Any]) -> None:
    with shop.client() as client:
        order = order_id()
        body = {"order_id": order, "qty": 1, "amount": 700, "address": "a"}
        post(client, "/commands/PlaceOrder", body)
        page = ready(open_page(), f"{shop.url}/ui#/projections")
        row = page.locator("tr", has=page.locator('a[href="#/projections/orders"]'))
        row.locator("button[data-action=stop]").click()
        expect(row.locator(".status")).to_have_text("stopped")
        assert client.get("/projections/orders").json()["status"] == "stopped"

        ready(page, f"{shop.url}/ui")  # a stopped projection waits for a person
        entry = item(page, "projection", "orders")
        expect(entry).to_contain_text("projection orders is stopped")
        entry.locator("button[data-action=start]").click()
        expect(entry).to_have_count(0)
        assert client.get("/projections/orders").json()["status"] in ("running", "rebuilding")

        ready(page, f"{shop.url}/ui#/projections/orders")
        page.locator("button[data-action=rebuild]").click()  # confirm() accepted
        expect(page.locator("#toast")).to_contain_text("rebuild orders: done")

        def rebuilt() -> bool:
            status = client.get("/projections/orders").json()
            return status["status"] == "running" and status["checkpoint"] == status["head"]

        until(rebuilt, "orders rebuilt")
        assert client.get(f"/read/orders/{order}").json()["status"] in ("placed", "confirmed")


def test_the_inbox_counts_are_metrics(shop: Daemon) -> None:
    with shop.client() as client:
        dead_letter(client)
        box = client.get("/inbox").json()
        assert box["total"] == sum(box["counts"].values()) and box["counts"]["dead_letter"] >= 1
        text = client.get("/metrics").text
        for kind, count in box["counts"].items():
            assert re.search(rf'^catgad_inbox_items{{kind="{kind}"}} {count}\.0$', text, re.M), kind
