"""The two HTTP services `catgad bench http` sets beside `catgad run`, served as catgad is.

    python -m bench.http_servers bare --port 8081
    python -m bench.http_servers peer --port 8082 --db peer.db

- **bare**: a Starlette endpoint at POST /commands/{type} that parses the JSON
  body and answers 201 with a small JSON body: what the HTTP stack alone costs,
  the ceiling of any service on it.
- **peer**: the service a user would write instead of catgad: the same
  endpoint over the `eventsourcing` library's SQLite persistence (the `Order`
  aggregate of bench.es_baseline: same preconditions as the YAML rules), with
  its aggregate cache, WAL and `synchronous` FULL as catgad's example. The
  library is synchronous, so each command runs on the event loop's thread, one
  at a time: one transaction (and one fsync) per command. A rejected command is
  a 422, an order that exists a 409, a body that is not a CreateOrder a 400.

Both run under uvicorn with uvloop and httptools, without access log, as
`catgad run` does.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSON = "application/json"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type=JSON)


async def _ready(request: Request) -> Response:
    return _json({"status": "ready"})


def bare_app() -> Starlette:
    async def command(request: Request) -> Response:
        body = orjson.loads(await request.body())
        return _json({"command": request.path_params["command_type"], "data": body}, 201)

    return Starlette(
        routes=[
            Route("/commands/{command_type}", command, methods=["POST"]),
            Route("/readyz", _ready),
        ]
    )


def peer_app(db: str) -> Starlette:
    from eventsourcing.persistence import IntegrityError

    from bench.es_baseline import OrderRejected, Orders

    app = Orders(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": db,
            "AGGREGATE_CACHE_MAXSIZE": "100000",
            "AGGREGATE_CACHE_FASTFORWARD": "n",  # one process: its cache is the truth
        }
    )

    async def command(request: Request) -> Response:
        command_type = request.path_params["command_type"]
        try:
            data = orjson.loads(await request.body())
            app.handle(command_type, data)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return _json({"error": f"bad request: {exc}"}, 400)
        except OrderRejected as exc:
            return _json({"error": str(exc)}, 422)
        except IntegrityError:  # the order's first event exists: the order does
            return _json({"error": "order already exists"}, 409)
        return _json({"command": command_type, "order_id": data["order_id"]}, 201)

    return Starlette(
        routes=[
            Route("/commands/{command_type}", command, methods=["POST"]),
            Route("/readyz", _ready),
        ],
        lifespan=lambda _app: _closing(app),
    )


@contextlib.asynccontextmanager
async def _closing(app: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        app.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_servers")
    parser.add_argument("kind", choices=("bare", "peer"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", default="peer.db", help="the peer's SQLite file")
    args = parser.parse_args(argv)
    app = bare_app() if args.kind == "bare" else peer_app(args.db)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
