"""The parts of httpcore that webhooks build on (catgad/handlers/transport.py).

The webhook client is httpcore's connection pool over a network backend of
catgad's own (plain asyncio streams): httpcore calls that backend and its
streams with the signatures of its AsyncNetworkBackend / AsyncNetworkStream,
and asks an idle connection's stream `get_extra_info("is_readable")` to learn
whether the server closed it. There is no public fallback. pyproject caps
httpcore below the next minor release; these tests fail loudly when a release
changes any of it (the signed-webhook tests then show what breaks).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import httpcore
import httpcore._async.http11 as http11
import pytest

from catgad.handlers.transport import AsyncioBackend, AsyncioStream

BREAKS = (
    f"httpcore {version('httpcore')} changed what catgad/handlers/transport.py implements"
    " or calls; webhooks may fail or reuse connections the server closed"
)


def _params(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ours", "theirs", "method"),
    [
        (AsyncioBackend, httpcore.AsyncNetworkBackend, "connect_tcp"),
        (AsyncioBackend, httpcore.AsyncNetworkBackend, "connect_unix_socket"),
        (AsyncioBackend, httpcore.AsyncNetworkBackend, "sleep"),
        (AsyncioStream, httpcore.AsyncNetworkStream, "read"),
        (AsyncioStream, httpcore.AsyncNetworkStream, "write"),
        (AsyncioStream, httpcore.AsyncNetworkStream, "aclose"),
        (AsyncioStream, httpcore.AsyncNetworkStream, "start_tls"),
        (AsyncioStream, httpcore.AsyncNetworkStream, "get_extra_info"),
    ],
)
def test_our_backend_and_stream_implement_httpcores_methods(
    ours: type, theirs: type, method: str
) -> None:
    assert _params(getattr(ours, method)) == _params(getattr(theirs, method)), BREAKS


def test_httpcore_asks_idle_connections_whether_they_are_readable() -> None:
    assert 'get_extra_info("is_readable")' in inspect.getsource(http11), BREAKS


def test_the_pool_and_request_take_what_the_webhook_client_passes() -> None:
    pool = _params(httpcore.AsyncConnectionPool.__init__)
    for name in (
        "ssl_context",
        "max_connections",
        "max_keepalive_connections",
        "keepalive_expiry",
        "http1",
        "http2",
        "network_backend",
    ):
        assert name in pool, BREAKS
    assert {"headers", "content"} <= set(_params(httpcore.Request.__init__)), BREAKS
    assert {"scheme", "host", "port", "target"} <= set(_params(httpcore.URL.__init__)), BREAKS
    for exc in ("ConnectError", "ReadError", "WriteError", "RemoteProtocolError"):
        assert issubclass(getattr(httpcore, exc), Exception), BREAKS
