"""The app factory: one Starlette application serving one Runtime."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from catgad.errors import CatgadError
from catgad.http.openapi import build_openapi
from catgad.http.problems import RequestContext, catgad_error_handler, http_error_handler
from catgad.http.projections import ProjectionEndpoints
from catgad.http.routes import Endpoints
from catgad.http.sagas import SagaEndpoints
from catgad.runtime import Runtime


def create_app(runtime: Runtime) -> Starlette:
    """The HTTP face of `runtime`; the caller opens and closes the runtime and its store."""
    endpoints = Endpoints(runtime, build_openapi(runtime.config))
    app = Starlette(
        routes=[
            *endpoints.routes(),
            *ProjectionEndpoints(runtime.projections).routes(),
            *SagaEndpoints(runtime.sagas).routes(),
        ],
        middleware=[Middleware(RequestContext)],
        exception_handlers={
            CatgadError: catgad_error_handler,
            HTTPException: http_error_handler,
        },
    )
    app.state.runtime = runtime
    return app
