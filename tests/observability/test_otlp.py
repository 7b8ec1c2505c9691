"""OTEL_TRACES_EXPORTER=otlp on a real daemon: its spans reach an OTLP/HTTP receiver (here, one
in the test's process decoding the protobuf requests as a collector would), with the service
name, the caller's trace and the parents right. What the receiver answers is what a collector
does: 200 and an empty ExportTraceServiceResponse."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import REPO, Daemon
from tests.support.ci import needed

ORDERS_YAML = REPO / "config" / "examples" / "orders.yaml"
TRACE = "5bf92f3577b34da6a3ce929d0e0e4737"
CALLER_SPAN = "10f067aa0ba902b8"

pytestmark = pytest.mark.slow


class Receiver:
    """An OTLP/HTTP traces endpoint on a free loopback port: POST /v1/traces, protobuf."""

    def __init__(self) -> None:
        try:
            from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        except ImportError:
            needed("opentelemetry-proto", "pip install 'catgad[otel]'")
        self.messages = trace_service_pb2
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.take(self.path, self.headers.get("Content-Type", ""), body)
                answer = receiver.messages.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, path: str, content_type: str, body: bytes) -> None:
        assert content_type == "application/x-protobuf", content_type
        request = self.messages.ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                            "service": resource.get("service.name"),
                            "attributes": {a.key: a.value.string_value for a in span.attributes},
                        }
                    )
        with self.lock:
            self.paths.append(path)
            self.spans.extend(found)

    def wait_for(self, names: set[str], within: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                spans = list(self.spans)
            if names <= {s["name"] for s in spans}:
                return spans
            time.sleep(0.05)
        raise AssertionError(f"spans {names} never received; got {[s['name'] for s in spans]}")


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_spans_reach_an_otlp_receiver_with_their_parents(tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "otlp-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: the batch processor sends soon
        }
        with Daemon(ORDERS_YAML, tmp_path, env=env) as daemon, daemon.client() as client:
            order = {
                "order_id": "x1",
                "customer": "c",
                "items": [{"sku": "a", "qty": 1, "price": 5}],
            }
            headers = {"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"}
            response = client.post("/commands/CreateOrder", json=order, headers=headers)
            assert response.status_code == 201, response.text
            spans = receiver.wait_for({"POST /commands/CreateOrder", "command CreateOrder"})
    assert set(receiver.paths) == {"/v1/traces"}
    mine = [s for s in spans if s["trace_id"] == TRACE]
    by_name = {s["name"]: s for s in mine}
    http = by_name["POST /commands/CreateOrder"]
    assert http["parent_id"] == CALLER_SPAN  # continues the caller's trace
    command = by_name["command CreateOrder"]
    assert command["parent_id"] == http["span_id"]
    assert command["attributes"]["catgad.stream"].endswith("x1")
    assert {s["service"] for s in mine} == {"otlp-test"}
