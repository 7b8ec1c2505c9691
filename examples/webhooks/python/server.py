"""catgad command handlers in Python: AddGiftNote of config/examples/orders.yaml (any path
but /payment), and ChargePayment of config/examples/order-saga.yaml (path /payment).

catgad POSTs {"command": <CloudEvent>, "state": {...}, "version": N}, signed per
Standard Webhooks; this server checks the signature with the official
`standardwebhooks` package, decides, and answers
  200 {"events": [{"type": ..., "data": {...}}]}   the events to append, or
  422 {"error": "reason"}                          a business rejection (the caller gets 409).
It only decides: catgad validates the events against their schemas and appends them.
Only the standard library besides `standardwebhooks`:

    pip install standardwebhooks
    ORDERS_WEBHOOK_SECRET=whsec_... PORT=8090 python server.py
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from standardwebhooks import Webhook, WebhookVerificationError

DEV_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # orders.yaml's development default


def webhook_for(secret: str) -> Webhook:
    """A `whsec_` secret is base64 (the library's form); any other is used as raw bytes."""
    return Webhook(secret if secret.startswith("whsec_") else secret.encode())


CARD_LIMIT = 100_000  # cents: a larger charge is declined


def charge(command: dict[str, Any], state: dict[str, Any], version: int) -> tuple[int, Any]:
    """ChargePayment: capture the amount, or decline it (an event the saga awaits)."""
    order_id, amount = command["data"]["order_id"], command["data"]["amount"]
    if state.get("status") == "captured":
        return 422, {"error": f"order {order_id} is paid already"}
    if amount > CARD_LIMIT:
        reason = f"over the card limit of {CARD_LIMIT} cents"
        return 200, {"events": [{"type": "PaymentDeclined",
                                 "data": {"order_id": order_id, "reason": reason}}]}  # fmt: skip
    return 200, {
        "events": [{"type": "PaymentCaptured", "data": {"order_id": order_id, "amount": amount}}]
    }


def decide(command: dict[str, Any], state: dict[str, Any], version: int) -> tuple[int, Any]:
    """AddGiftNote, the business decision: pure, from the command and the order's state."""
    order_id, note = command["data"]["order_id"], command["data"]["note"]
    if version == 0:
        return 422, {"error": f"order {order_id} does not exist"}
    if state.get("status") in ("shipped", "cancelled"):
        return 422, {"error": f"the order is {state['status']}: too late for a gift note"}
    return 200, {
        "events": [{"type": "GiftNoteAdded", "data": {"order_id": order_id, "note": note}}]
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: catgad reuses its connections
    webhook = webhook_for(os.environ.get("ORDERS_WEBHOOK_SECRET") or DEV_SECRET)
    stats: ClassVar[dict[str, int]] = {"verified": 0, "unverified": 0}
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            payload = self.webhook.verify(body, dict(self.headers))
        except WebhookVerificationError as exc:
            self._count("unverified")
            # Not a business rejection (no "error" member): catgad answers 502 naming the handler.
            self._reply(401, {"message": f"signature check failed: {exc}"})
            return
        self._count("verified")
        handler = charge if self.path.rstrip("/").endswith("/payment") else decide
        status, answer = handler(payload["command"], payload["state"], payload["version"])
        self._reply(status, answer)

    def do_GET(self) -> None:
        with self.lock:
            self._reply(200, dict(self.stats))

    def _count(self, what: str) -> None:
        with self.lock:
            self.stats[what] += 1

    def _reply(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise
        return


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, int(os.environ.get("PORT", "8090"))), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(
        f"gift-note handler listening on http://{host}:{server.server_port}/gift-note", flush=True
    )
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
