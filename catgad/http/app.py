"""The app factory: one Starlette application serving one Runtime."""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from catgad.errors import CatgadError
from catgad.http.access import OPEN, Access
from catgad.http.fastpath import CommandPath, serves
from catgad.http.inbox import InboxEndpoints
from catgad.http.openapi import build_openapi
from catgad.http.problems import RequestContext, catgad_error_handler, http_error_handler
from catgad.http.projections import ProjectionEndpoints
from catgad.http.routes import Endpoints
from catgad.http.streams import StreamIndexEndpoints
from catgad.http.ui import UiEndpoints
from catgad.reactors.feature import reactors_of
from catgad.runtime import Runtime


def secure(document: dict[str, Any], routes: list[BaseRoute], access: Access) -> None:
    """Declare the bearer scheme, and on every operation the scope its route asks for."""
    if not access.enabled:
        return
    document.setdefault("components", {})["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "Authorization: Bearer <token>; each operation names the scope "
            "its token needs (commands, read, approve, manage). 401 without a known token, "
            "403 without the scope.",
        }
    }
    for path, operations in document.get("paths", {}).items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method, operation in operations.items():
            scope = _scope_of(routes, access, method.upper(), concrete)
            if scope is None or scope == OPEN:
                operation["security"] = []
                continue
            operation["security"] = [{"bearer": [scope]}]
            operation["x-catgad-scope"] = scope
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"$ref": "#/components/responses/Unauthorized"})
            responses.setdefault("403", {"$ref": "#/components/responses/Forbidden"})
    document["components"].setdefault("responses", {}).update(
        {
            "Unauthorized": _problem("No token, or an unknown one (WWW-Authenticate: Bearer)."),
            "Forbidden": _problem("The token lacks the scope: `scope` names it."),
        }
    )


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {"application/problem+json": {"schema": schema}}}


def _scope_of(routes: list[BaseRoute], access: Access, method: str, path: str) -> str | None:
    for route in routes:
        if isinstance(route, Route) and route.methods and method in route.methods:
            if route.path_regex.fullmatch(path):
                return access.declared.get((method, route.path))
    return None


def reactor_routes(runtime: Runtime, access: Access) -> list[BaseRoute]:
    """The endpoints of each reactor of the config (sagas, processes, ...)."""
    return [
        route
        for reactor in reactors_of(runtime.config)
        for route in reactor.routes(runtime.reactor(reactor.key), access)
    ]


class CatgadApp(Starlette):
    """Starlette, with POST /commands/{type} served ahead of its middleware and router.

    The hot route (catgad.http.fastpath) needs none of Starlette's layers (its
    exception middleware and the router): every layer costs each command a call,
    a closure around `send` and a resume of its frame.
    """

    def __init__(self, *, hot: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if serves(scope):
            await self.hot(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(runtime: Runtime) -> CatgadApp:
    """The HTTP face of `runtime`; the caller opens and closes the runtime and its store."""
    endpoints = Endpoints(runtime, build_openapi(runtime.config))
    access = Access(runtime.config.service.auth)  # no tokens: the API is open
    inbox = InboxEndpoints(runtime)
    routes = [  # each declares the scope it asks for: the hot path reads it below
        *endpoints.routes(access),
        *ProjectionEndpoints(runtime.projections).routes(access),
        *reactor_routes(runtime, access),
        *inbox.routes(access),
        *StreamIndexEndpoints(runtime.store).routes(access),
        *UiEndpoints(runtime, access).routes(access),
    ]
    app = CatgadApp(
        hot=RequestContext(CommandPath(endpoints=endpoints, access=access), adds_id=True),
        routes=routes,
        lifespan=inbox.inbox.lifespan,
        middleware=[Middleware(RequestContext)],
        exception_handlers={
            CatgadError: catgad_error_handler,
            HTTPException: http_error_handler,
        },
    )
    app.state.runtime = runtime
    app.state.access = access
    secure(endpoints.openapi_document, app.routes, access)
    return app
