"""A slow payments webhook for the saga crash tests: run as its own process.

    PORT=0 SECRET=whsec_... DELAY=0.4 RECORD=/tmp/x.jsonl python payments_server.py

It verifies each request with `standardwebhooks`, waits DELAY seconds (a slow
payment provider: sagas are mid-flight for a while), appends one JSON line
{"order_id", "command_id", "webhook_id"} to RECORD for every request, and
answers like the example handler: PaymentCaptured, or PaymentDeclined above
the card limit. It prints "listening on PORT" once it accepts connections.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

LIMIT = 100_000
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    webhook = Webhook(os.environ["SECRET"])
    delay = float(os.environ.get("DELAY", "0"))
    record = os.environ["RECORD"]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            payload = self.webhook.verify(body, dict(self.headers))
        except WebhookVerificationError as exc:
            self._reply(401, {"message": str(exc)})
            return
        command = payload["command"]
        order_id, amount = command["data"]["order_id"], command["data"]["amount"]
        with _lock, open(self.record, "a", encoding="utf-8") as out:
            line = {"order_id": order_id, "command_id": command["id"],
                    "webhook_id": self.headers.get("webhook-id")}  # fmt: skip
            out.write(json.dumps(line) + "\n")
        time.sleep(self.delay)
        if amount > LIMIT:
            event = {"type": "PaymentDeclined", "data": {"order_id": order_id, "reason": "limit"}}
        else:
            event = {"type": "PaymentCaptured", "data": {"order_id": order_id, "amount": amount}}
        self._reply(200, {"events": [event]})

    def _reply(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on {server.server_port}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
