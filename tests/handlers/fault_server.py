"""A webhook server that misbehaves on purpose, run as a subprocess by the handler tests.

    python fault_server.py --secret whsec_... [--secret ...] [--corpus DIR] [--slow S]
                           [--trickle S] [--tls-cert PEM --tls-key PEM]

Prints `listening on http://HOST:PORT` (https with --tls-cert) once it accepts
connections. Every POST is counted per path (GET /stats), and signed ones are verified with the
official `standardwebhooks` library against any of the secrets given.

    POST /triage          decide: TicketTriaged, or 422 {"error"} for priority 0
    POST /slow            the same, after sleeping --slow seconds
    POST /trickle         the same, its response (status line, headers, body) sent one byte
                          every --trickle seconds: no single read waits long, the whole does
    POST /fail            500
    POST /hang            prints `HANG <webhook-id>`, then never answers (the test kills us)
    POST /switch          per the mode set by POST /mode/<ok|fail|slow|bad:NAME>
    POST /bad/<name>      the canned reply <name>.json of --corpus
    GET  /stats           {"requests": {path: n}, "verified": n, "unverified": n, "ids": [...]}
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from standardwebhooks import Webhook, WebhookVerificationError


class State:
    def __init__(
        self, secrets: list[str], corpus: Path | None, slow: float, trickle: float
    ) -> None:
        self.hooks = [Webhook(s if s.startswith("whsec_") else s.encode()) for s in secrets]
        self.corpus = corpus
        self.slow = slow
        self.trickle = trickle
        self.mode = "ok"
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.verified = 0
        self.unverified = 0
        self.ids: list[str] = []

    def verify(self, body: bytes, headers: dict[str, str]) -> Any:
        last: Exception | None = None
        for hook in self.hooks:
            try:
                return hook.verify(body, headers)
            except WebhookVerificationError as exc:
                last = exc
        raise WebhookVerificationError(str(last) if last else "no secret")


def triage(payload: dict[str, Any]) -> tuple[int, Any]:
    data = payload["command"]["data"]
    priority = data.get("priority", 3)
    if priority == 0:
        return 422, {"error": "priority 0 is not a priority"}
    event = {"ticket_id": data["ticket_id"], "priority": priority, "by": "python"}
    return 200, {"events": [{"type": "TicketTriaged", "data": event}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: ClassVar[State]

    def do_GET(self) -> None:
        s = self.state
        with s.lock:
            body = {
                "requests": dict(s.requests),
                "verified": s.verified,
                "unverified": s.unverified,
                "ids": list(s.ids),
                "mode": s.mode,
            }
        self._json(200, body)

    def do_POST(self) -> None:
        s = self.state
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        path = self.path
        if path.startswith("/mode/"):
            with s.lock:
                s.mode = path.removeprefix("/mode/")
            self._json(200, {"mode": s.mode})
            return
        with s.lock:
            s.requests[path] = s.requests.get(path, 0) + 1
            s.ids.append(self.headers.get("webhook-id", ""))
        try:
            payload = s.verify(raw, dict(self.headers))
        except WebhookVerificationError as exc:
            with s.lock:
                s.unverified += 1
            self._json(401, {"message": f"signature check failed: {exc}"})
            return
        with s.lock:
            s.verified += 1
        mode = s.mode if path == "/switch" else path.strip("/").split("/")[0]
        if mode.startswith("bad:"):  # /switch serving a corpus reply
            mode, path = "bad", "/bad/" + mode.removeprefix("bad:")
        if mode == "hang":
            print(f"HANG {self.headers.get('webhook-id')}", flush=True)
            while True:
                time.sleep(60)
        if mode == "fail":
            self._json(500, {"message": "the handler crashed"})
        elif mode == "slow":
            time.sleep(s.slow)
            self._json(*triage(payload))
        elif mode == "trickle":
            self._trickle(*triage(payload))
        elif mode == "bad" and s.corpus is not None:
            self._canned(json.loads((s.corpus / f"{path.split('/')[2]}.json").read_text()))
        else:
            self._json(*triage(payload))

    def _canned(self, case: dict[str, Any]) -> None:
        reply = case["reply"]
        body = reply["raw"].encode() if "raw" in reply else json.dumps(reply["json"]).encode()
        self.send_response(reply.get("status", 200))
        for name, value in (reply.get("headers") or {}).items():
            self.send_header(name, value)
        self.send_header("content-type", reply.get("content_type", "application/json"))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n"
            f"content-length: {len(raw)}\r\n\r\n"
        ).encode()
        try:
            for byte in head + raw:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.state.trickle)
        except OSError:  # the client gave up: what the test expects
            self.close_connection = True

    def _json(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--slow", type=float, default=5.0)
    parser.add_argument("--trickle", type=float, default=0.05)
    parser.add_argument("--tls-cert", type=Path, default=None)
    parser.add_argument("--tls-key", type=Path, default=None)
    args = parser.parse_args()
    Handler.state = State(args.secret, args.corpus, args.slow, args.trickle)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    scheme = "http"
    if args.tls_cert is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print(f"listening on {scheme}://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
