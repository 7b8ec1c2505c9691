"""OpenTelemetry traces, optional: HTTP -> command -> handler -> store -> bus -> projection and
saga/process steps, one trace carried across processes by the W3C `traceparent`.

Off unless OTEL_TRACES_EXPORTER is `otlp` or `console` and the `otel` extra is installed:
then nothing of OpenTelemetry is imported and every hook returns a shared no-op context
(one global read and a call). On, each hook opens a span; the command's span context is
written into the envelope (the CloudEvents distributed-tracing extension: `traceparent`,
`tracestate`), which its events inherit, so a projection, a saga or another daemon continues
the trace from the event.

Configured by the standard variables: OTEL_TRACES_EXPORTER (otlp|console|none),
OTEL_SERVICE_NAME (else the config's service name), OTEL_EXPORTER_OTLP_ENDPOINT and the
other OTEL_EXPORTER_OTLP_* read by the exporter itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from catgad.envelope import Envelope

__all__ = ["command_span", "enabled", "event_span", "headers", "http_span", "setup", "span"]

_NULL: AbstractContextManager[None] = contextlib.nullcontext()
_tracer: Any = None  # an opentelemetry Tracer once set up
_propagator: Any = None
EXPORTERS = ("otlp", "console", "none")


class TracingSetupError(RuntimeError):
    """OTEL_TRACES_EXPORTER asks for something this install cannot do."""


def enabled() -> bool:
    return _tracer is not None


def setup(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install a tracer provider when OTEL_TRACES_EXPORTER asks for one; True if tracing is on."""
    global _tracer, _propagator
    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() or "none"
    if exporter_name not in EXPORTERS:
        raise TracingSetupError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r}: expected one of {', '.join(EXPORTERS)}"
        )
    if exporter_name == "none":
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as exc:
        raise TracingSetupError(
            f"OTEL_TRACES_EXPORTER={exporter_name} needs the otel extra: "
            f"pip install 'catgad[otel]' ({exc.name} is missing)"
        ) from None
    name = environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    processor: SpanProcessor
    if exporter_name == "console":
        # one JSON object per line on stdout, written as each span ends: easy to read back
        processor = SimpleSpanProcessor(
            ConsoleSpanExporter(
                out=sys.stdout, formatter=lambda s: s.to_json(indent=None) + os.linesep
            )
        )
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingSetupError(
                "OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'catgad[otel]'"
            ) from None
        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("catgad")
    _propagator = TraceContextTextMapPropagator()
    return True


def _parent(carrier: Mapping[str, Any] | None) -> Any:
    """The context to start a span in: the current span's if one is open, else the carrier's."""
    from opentelemetry import trace

    if carrier and not trace.get_current_span().get_span_context().is_valid:
        return _propagator.extract(carrier)
    return None


@contextlib.contextmanager
def _span(name: str, carrier: Mapping[str, Any] | None, attrs: dict[str, Any]) -> Iterator[None]:
    with _tracer.start_as_current_span(name, context=_parent(carrier), attributes=attrs):
        yield


def span(name: str, **attrs: Any) -> AbstractContextManager[None]:
    """A child span of the current one (a handler call, a store append)."""
    if _tracer is None:
        return _NULL
    return _span(name, None, attrs)


def http_span(headers: Mapping[str, str], command_type: str) -> AbstractContextManager[None]:
    """The server span of POST /commands/{type}, continuing the caller's `traceparent`."""
    if _tracer is None:
        return _NULL
    carrier = {k: headers[k] for k in ("traceparent", "tracestate") if k in headers}
    return _span(f"POST /commands/{command_type}", carrier, {"catgad.command": command_type})


@contextlib.contextmanager
def _command(envelope: Envelope) -> Iterator[None]:
    attrs = {"catgad.command": envelope.type, "catgad.command_id": envelope.id,
             "catgad.stream": envelope.subject or ""}  # fmt: skip
    with _span(f"command {envelope.type}", envelope.extensions, attrs):
        # the envelope now names this span: its events, and a routed command, continue it
        _propagator.inject(envelope.extensions)
        yield


def command_span(envelope: Envelope) -> AbstractContextManager[None]:
    """A command's span; writes its context into the envelope's `traceparent`."""
    if _tracer is None:
        return _NULL
    return _command(envelope)


def event_span(name: str, event: Envelope, **attrs: Any) -> AbstractContextManager[None]:
    """A span for work on a stored event (publish, project, a saga/process step), continuing
    the trace of the command that appended it."""
    if _tracer is None or "traceparent" not in event.extensions:
        return _NULL
    attrs.update({"catgad.event": event.type, "catgad.event_id": event.id,
                  "catgad.stream": event.subject or ""})  # fmt: skip
    return _span(name, event.extensions, attrs)


def continued(
    name: str, carrier: Mapping[str, Any] | None, **attrs: Any
) -> AbstractContextManager[None]:
    """A span continuing a trace context kept aside (`remember`), for work done later in
    another task (a saga's driver)."""
    if _tracer is None or not carrier:
        return _NULL
    return _span(name, carrier, {f"catgad.{k}": v for k, v in attrs.items()})


REMEMBERED = 10_000  # trace contexts kept per reactor; the oldest go first


def remember(traces: dict[str, dict[str, Any]], key: str, event: Envelope) -> None:
    """Keep `event`'s trace context under `key` for `continued`, when tracing is on."""
    if _tracer is None or "traceparent" not in event.extensions:
        return
    traces.pop(key, None)
    traces[key] = {k: v for k, v in event.extensions.items() if k in ("traceparent", "tracestate")}
    if len(traces) > REMEMBERED:
        del traces[next(iter(traces))]


def headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span, for an outgoing request."""
    if _tracer is None:
        return {}
    out: dict[str, str] = {}
    _propagator.inject(out)
    return out


def inject(extensions: dict[str, Any]) -> dict[str, Any]:
    """A reactor's outgoing command continues the current span (a saga step)."""
    if _tracer is not None:
        _propagator.inject(extensions)
    return extensions
