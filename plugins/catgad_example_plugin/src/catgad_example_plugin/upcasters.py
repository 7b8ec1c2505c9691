"""Upcaster plugins: `upcast(event) -> data`, for a step YAML cannot express.

`event` is the stored CloudEvent as a dict, at the step's old version
(`dataschemaversion`); the function returns the data at the next version. It
runs on every read of an old event and in `catgad migrate`, so it must be
pure: the same event always gives the same data.
"""

from __future__ import annotations

from typing import Any


def split_customer_name(event: dict[str, Any]) -> dict[str, Any]:
    """`customer: "Ada Lovelace"` becomes `customer: {first: "Ada", last: "Lovelace"}`."""
    data = dict(event["data"])
    first, _, last = str(data.get("customer", "")).partition(" ")
    data["customer"] = {"first": first, "last": last}
    return data
