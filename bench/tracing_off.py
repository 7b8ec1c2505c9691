"""What the tracing hooks cost when tracing is off: the hooks one command passes through on
the HTTP path, timed with timeit (best of 5), beside what that command costs in all.

    python -m bench.tracing_off [--per-command-us 770]

Off (OTEL_TRACES_EXPORTER unset or `none`), no OpenTelemetry module is imported and each hook
is a global read returning a shared null context: this prints the nanoseconds those take for
one command and their share of a command's time (the HTTP path's, from bench/RESULTS-http.md).
"""

from __future__ import annotations

import argparse
import timeit

from catgad.envelope import Envelope
from catgad.observability import tracing

EVENT = Envelope(type="OrderCreated", data={}, source="bench", id="1", subject="Order-1")
HEADERS = {"content-type": "application/json"}


def one_command() -> None:
    """The hooks of one CreateOrder: HTTP, command, store append, publish, projection, and the
    outgoing headers a webhook call asks for."""
    with tracing.http_span(HEADERS, "CreateOrder"):
        with tracing.command_span(EVENT):
            with tracing.span("store.append", stream="Order-1"):
                pass
            with tracing.event_span("bus.publish", EVENT):
                pass
            tracing.headers()
        with tracing.event_span("project", EVENT, projection="orders"):
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_off", description=__doc__)
    parser.add_argument(
        "--per-command-us", type=float, default=770.0,
        help="what one command costs on the HTTP path, in microseconds (770: 1,300/s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if tracing.enabled():
        raise SystemExit("tracing is on in this process: unset OTEL_TRACES_EXPORTER")
    number = 200_000
    best = min(timeit.repeat(one_command, number=number, repeat=5)) / number
    share = best / (args.per_command_us / 1e6)
    print(f"tracing off: the hooks of one command take {best * 1e9:.0f} ns, "
          f"{share:.3%} of a {args.per_command_us:.0f} us command")  # fmt: skip


if __name__ == "__main__":
    main()
