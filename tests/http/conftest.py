"""One real orders daemon shared by the HTTP tests; each test uses its own order ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.daemon import ORDERS_YAML, Daemon


@pytest.fixture(scope="session")
def orders_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(ORDERS_YAML, tmp_path_factory.mktemp("http-daemon")) as daemon:
        yield daemon


@pytest.fixture
def client(orders_daemon: Daemon) -> Iterator[httpx.Client]:
    with orders_daemon.client() as c:
        yield c


@pytest.fixture
def order_id() -> str:
    return f"o-{uuid.uuid4().hex[:12]}"
