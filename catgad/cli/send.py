"""`catgad send CONFIG COMMAND DATA`: run one command, in-process or against a daemon."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from catgad.app.load import load_config
from catgad.errors import CatgadError, UsageError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "send",
        help="send one command and print its result",
        description="Send COMMAND with DATA (JSON, @FILE or - for stdin). By default the "
        "command runs in this process against the config's store (safe beside a running "
        "daemon on the same SQLite file); with --url it is POSTed to a running daemon.",
    )
    parser.add_argument("config", metavar="CONFIG", help="path to the YAML config")
    parser.add_argument("command", metavar="COMMAND", help="command type, e.g. CreateOrder")
    parser.add_argument("data", metavar="DATA", help="JSON object, @file.json, or - for stdin")
    parser.add_argument("--url", help="base URL of a running daemon, e.g. http://127.0.0.1:8080")
    parser.add_argument("--idempotency-key", dest="command_id", help="the command id")
    parser.add_argument(
        "--if-match", dest="expected_version", type=int, help="expected stream version"
    )


def _read_data(spec: str) -> Any:
    if spec == "-":
        raw = sys.stdin.buffer.read()
        origin = "stdin"
    elif spec.startswith("@"):
        try:
            with open(spec[1:], "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise UsageError(f"cannot read {spec[1:]}: {exc.strerror}") from None
        origin = spec[1:]
    else:
        raw = spec.encode()
        origin = "DATA"
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{origin} is not valid JSON: {exc}") from None


def run(args: argparse.Namespace) -> int:
    data = _read_data(args.data)
    if args.url:
        return _send_http(args, data)
    config = load_config(args.config)
    return asyncio.run(_send_local(config, args, data))


async def _send_local(config: Any, args: argparse.Namespace, data: Any) -> int:
    from catgad.runtime import Runtime

    async with Runtime.start(config) as runtime:
        try:
            result = await runtime.engine.execute(
                args.command,
                data,
                command_id=args.command_id,
                expected_version=args.expected_version,
            )
        except CatgadError as exc:
            if exc.status >= 500:
                raise
            sys.stdout.buffer.write(orjson.dumps(exc.problem(), option=orjson.OPT_INDENT_2))
            print()
            return 1
    sys.stdout.buffer.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2))
    print()
    return 0


def _send_http(args: argparse.Namespace, data: Any) -> int:
    import httpx

    headers = {"content-type": "application/json"}
    if args.command_id:
        headers["idempotency-key"] = args.command_id
    if args.expected_version is not None:
        headers["if-match"] = str(args.expected_version)
    url = f"{args.url.rstrip('/')}/commands/{args.command}"
    try:
        response = httpx.post(url, content=orjson.dumps(data), headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"catgad send: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    print(response.text)
    return 0 if response.is_success else 1
