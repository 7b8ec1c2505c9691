"""Command handlers of the orders example: `(command, state) -> list[event]`.

`command` is the command's CloudEvent as a dict (its payload under "data"),
`state` the order's current state. A handler returns the events to append,
each `{"type": ..., "data": {...}}`, or raises `catgad.Rejected(reason)`;
catgad checks every event against its schema before appending anything.
Handlers get copies: changing `command` or `state` here changes nothing else.
"""

from __future__ import annotations

from typing import Any

from catgad import Rejected

Event = dict[str, Any]


def apply_discount(command: dict[str, Any], state: dict[str, Any]) -> list[Event]:
    """ApplyDiscount: take `percent` off the total of an order that is not paid yet."""
    data = command["data"]
    if state.get("status") != "created":
        raise Rejected("only an order that is created and not paid can be discounted")
    if state.get("discount"):
        raise Rejected(f"the order already has a {state['discount']}% discount")
    amount = state["total"] * data["percent"] // 100
    return [
        {
            "type": "DiscountApplied",
            "data": {
                "order_id": data["order_id"],
                "code": data["code"],
                "percent": data["percent"],
                "amount": amount,
            },
        }
    ]


async def award_loyalty_points(command: dict[str, Any], state: dict[str, Any]) -> list[Event]:
    """A coroutine handler works the same way (this one is used by the tests)."""
    if state.get("status") not in ("paid", "shipped"):
        raise Rejected("points are awarded once the order is paid")
    points = state.get("paid", 0) // 100
    if not points:
        return []
    return [
        {
            "type": "PointsAwarded",
            "data": {"order_id": command["data"]["order_id"], "points": points},
        }
    ]


def gift_note(command: dict[str, Any], state: dict[str, Any]) -> list[Event]:
    """AddGiftNote in Python: the same decision as the Node.js webhook of examples/webhooks."""
    data = command["data"]
    if state.get("status") in ("shipped", "cancelled"):
        raise Rejected(f"the order is {state['status']}: too late for a gift note")
    return [{"type": "GiftNoteAdded", "data": {"order_id": data["order_id"], "note": data["note"]}}]
