"""Delivers projection events to a webhook handler: signed POSTs, retried, behind its breaker.

The body is `{"event": <CloudEvent>, "projection": name, "position": p}`
(SPEC section 5); `webhook-id` is the event id, the same for every attempt and
every redelivery, so the receiver deduplicates by it. Any 2xx is success (the
body is not read). 4xx (but 408/429) is the handler refusing this event:
BadReply, poison. 5xx, 408, 429, timeouts and connection errors are retried
with the handler's backoff, then WebhookFailed, which the runner treats as
"down": it waits and delivers the same event again. Signing, settings and the
circuit breaker are the command handlers' (catgad.handlers).
"""

from __future__ import annotations

import asyncio
import random

import httpx
import orjson

from catgad import __version__
from catgad.config.model import HandlerConfig
from catgad.envelope import Envelope
from catgad.errors import BadReply, WebhookFailed
from catgad.handlers.circuit import CircuitBreaker
from catgad.handlers.signing import Signer
from catgad.handlers.webhook import WebhookSettings

_RETRYABLE_4XX = frozenset({408, 429})


class WebhookDelivery:
    kind = "webhook"

    def __init__(self, handler: HandlerConfig) -> None:
        self.handler = handler.name
        self.settings = WebhookSettings.from_config(handler)
        self.breaker = CircuitBreaker(
            handler.name, failures=self.settings.failures, reset_after=self.settings.reset_after
        )
        self._signer = Signer(self.settings.secrets)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout),
            headers={"content-type": "application/json", "user-agent": f"catgad/{__version__}"},
            follow_redirects=False,
        )

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver(self, projection: str, event: Envelope) -> None:
        body = orjson.dumps(
            {"event": event.to_dict(), "projection": projection, "position": event.position}
        )
        why = ""
        attempts = 0
        for retry in range(self.settings.retries + 1):
            if retry:
                await asyncio.sleep(self.settings.backoff(retry - 1, random.random))
            self.breaker.admit()
            attempts += 1
            try:
                status, snippet = await self._post(event.id, body)
            except BaseException:
                self.breaker.abandoned()
                raise
            if status is None or status >= 500 or status in _RETRYABLE_4XX:
                self.breaker.failed()
                why = snippet if status is None else f"answered {status}{snippet}"
                continue
            self.breaker.succeeded()
            if 200 <= status < 300:
                return
            raise BadReply(
                self.handler, f"handler {self.handler!r} refused the event: {status}{snippet}"
            )
        raise WebhookFailed(self.handler, attempts, why)

    async def _post(self, message_id: str, body: bytes) -> tuple[int | None, str]:
        """(status, body snippet), or (None, why) when no answer came."""
        headers = self._signer.headers(message_id, body)
        try:
            response = await self._client.post(self.settings.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return None, f"no answer within {self.settings.timeout:g}s"
        except httpx.HTTPError as exc:
            return None, f"cannot reach {self.settings.url}: {str(exc) or type(exc).__name__}"
        text = response.content[:200].decode("utf-8", "replace").strip()
        return response.status_code, f": {text}" if text else ""
