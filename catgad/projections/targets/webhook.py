"""Delivers projection events to a webhook handler: signed POSTs, retried, behind its breaker.

The body is `{"event": <CloudEvent>, "projection": name, "position": p}`
(SPEC section 5); `webhook-id` is the event id, the same for every attempt and
every redelivery, so the receiver deduplicates by it. Any 2xx is success (the
body is not read). 4xx (but 408/429) is the handler refusing this event:
BadReply, poison. 5xx, 408, 429, timeouts and connection errors are retried
with the handler's backoff, then WebhookFailed, which the runner treats as
"down": it waits and delivers the same event again. The client (pool, signing,
time limit per attempt, retries, circuit breaker) is the command handlers'
(catgad.handlers.webhook.WebhookHandler.post).
"""

from __future__ import annotations

import orjson

from catgad.envelope import Envelope
from catgad.errors import BadReply
from catgad.handlers.section import HandlerConfig
from catgad.handlers.webhook import WebhookHandler, snippet


class WebhookDelivery:
    kind = "webhook"

    def __init__(self, handler: HandlerConfig) -> None:
        self.handler = handler.name
        # the command handlers' client: pool, signing, time limit per attempt, retries, breaker
        self.client = WebhookHandler.from_config(handler, {})
        self.settings = self.client.settings
        self.breaker = self.client.breaker

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        await self.client.close()

    async def deliver(self, projection: str, event: Envelope) -> None:
        body = orjson.dumps(
            {"event": event.to_dict(), "projection": projection, "position": event.position}
        )
        status, content = await self.client.post(event.id, body)  # WebhookFailed: down
        if not 200 <= status < 300:
            raise BadReply(
                self.handler,
                f"handler {self.handler!r} refused the event: {status}{snippet(content)}",
            )
