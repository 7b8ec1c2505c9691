"""The one rule for a missing server: under CI it fails the run, elsewhere the test skips.

Every test that cannot run without a server (or a server's binary) calls
`needed(server, why)`; nothing else in tests/ skips for a missing server, so
`CI=true` can never pass a backend by skipping it.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this is a CI run (CI=true, as every CI service sets it; 1 and yes count too)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def needed(server: str, why: str) -> NoReturn:
    """Fail the test under CI, skip it elsewhere: `server` (what is missing) is needed, `why`."""
    message = f"{server} needed: {why}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing server fails, it is never skipped)")
    pytest.skip(message)
