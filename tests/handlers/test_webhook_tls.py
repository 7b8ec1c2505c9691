"""Webhooks over https: the handler's own asyncio TLS, against a real TLS server.

The server's certificate is self-signed for 127.0.0.1; a handler trusts it the way
a user trusts a private CA, through SSL_CERT_FILE, and refuses it otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from catgad.errors import WebhookFailed
from tests.handlers.conftest import tickets
from tests.handlers.servers import WebhookServer
from tests.support.ci import needed


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        needed("openssl", "it makes the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_a_signed_call_over_https(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with WebhookServer.python_faults(tls=certificate) as server:
        assert server.base.startswith("https://")
        async with tickets(tmp_path, server.url("/triage")) as t:
            await t.open()
            for priority in (1, 2):  # the second over the kept-alive TLS connection
                result = await t.triage(priority=priority)
                assert result.events[0].data["priority"] == priority
        assert server.stats()["verified"] == 2


async def test_an_untrusted_certificate_is_a_connection_failure(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with WebhookServer.python_faults(tls=certificate) as server:
        async with tickets(tmp_path, server.url("/triage"), retries=1) as t:
            await t.open()
            with pytest.raises(WebhookFailed) as caught:
                await t.triage()
            assert caught.value.attempts == 2
            assert "cannot connect" in caught.value.detail
            assert "CERTIFICATE_VERIFY_FAILED" in caught.value.detail
            assert await t.store.stream_version("Ticket-t1") == 1
        assert server.requests("/triage") == 0
