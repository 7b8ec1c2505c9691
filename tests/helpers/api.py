"""Small HTTP helpers for tests against the orders example: commands and problem checks."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://catgad.dev/problems/"


def create_order(client: httpx.Client, order_id: str, **headers: str) -> httpx.Response:
    """CreateOrder for 2 x 450 cents (total 900)."""
    body = {
        "order_id": order_id,
        "customer": "ada",
        "items": [{"sku": "tea", "qty": 2, "price": 450}],
    }
    return client.post("/commands/CreateOrder", json=body, headers=headers)


def assert_problem(resp: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """An RFC 9457 body of the given status and type; returns it for further checks."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = resp.json()
    assert body["type"] == PROBLEM_BASE + slug, body
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == resp.request.url.path
    return body
