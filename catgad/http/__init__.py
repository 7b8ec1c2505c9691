"""The HTTP API: app factory, routes, RFC 9457 problems and the OpenAPI document."""

from catgad.http.app import create_app

__all__ = ["create_app"]
