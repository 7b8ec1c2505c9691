"""Access (SPEC section 12): bearer tokens with scopes, checked on every route but the probes.

    access = Access(config.service.auth)    # no tokens in the config: the API is open
    access.route("read", "/streams/{id}", endpoint, "GET")

Each token is kept as the SHA-256 digest of its secret (catgad.service.section;
a secret written `sha256:<hex>` is such a digest already, so the config need
hold no plaintext). A presented token is hashed once and compared with every digest
in constant time, all of them, so the time taken says nothing about which
one matched or how much of one did. Secrets are never logged: problems name
the token (by its `name`) or the scope, never the secret.

- no `Authorization: Bearer <secret>`, or an unknown one: 401 with
  `WWW-Authenticate: Bearer`;
- a known token without the route's scope: 403 naming the scope.

A browser cannot put a header on a page it navigates to, so the dashboard's own GET
routes (catgad.http.ui, made with `signin=`) also take the token from the cookie COOKIE,
which the sign-in page sets for the path /ui only: the JSON API never receives it, so
it cannot be used to act on a person's behalf from another site (the API reads the
header alone, which the dashboard's scripts send). There a browser without a good
token is sent to the sign-in page rather than shown a problem.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from catgad.errors import Forbidden, Unauthorized
from catgad.service.model import SCOPES, AuthToken

OPEN = "open"  # the probes: /healthz, /readyz, and the dashboard's sign-in page
COOKIE = "catgad_token"  # the dashboard's token in a browser, for paths under /ui only
Endpoint = Callable[[Request], Awaitable[Response]]


class Access:
    """The tokens of a service, and the guard every endpoint is wrapped in."""

    def __init__(self, tokens: Iterable[AuthToken] = ()) -> None:
        self.tokens = list(tokens)
        self.declared: dict[tuple[str, str], str] = {}  # (method, path) -> scope

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def route(
        self, scope: str, path: str, endpoint: Endpoint, method: str, *, signin: str | None = None
    ) -> Route:
        """A route answering only requests whose token holds `scope` (OPEN: anyone). Every
        route is made here, so `declared` lists each one with its scope. A dashboard page
        gives `signin`: the token may come from the cookie too, and a browser without a
        good one is redirected there (see the module docstring)."""
        if scope != OPEN and scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        self.declared[(method, path)] = scope
        if scope == OPEN or not self.tokens:  # nothing to check: not a coroutine more
            return Route(path, endpoint, methods=[method])

        async def guarded(request: Request) -> Response:
            try:
                request.state.token = self.check(request, scope, cookie=signin is not None)
            except (Unauthorized, Forbidden) as exc:
                if signin is None or "text/html" not in request.headers.get("accept", ""):
                    raise
                return RedirectResponse(f"{signin}?reason={exc.slug}", 303)
            return await endpoint(request)

        return Route(path, guarded, methods=[method])

    def token_name(self, request: Request) -> str:
        """Who is asking, by the name of their token (`anonymous` on an open API)."""
        token = getattr(request.state, "token", None)
        return token.name if isinstance(token, AuthToken) else "anonymous"

    def check(self, request: Request, scope: str, *, cookie: bool = False) -> AuthToken:
        header = request.headers.get("authorization")
        if header is None and cookie and request.cookies.get(COOKIE):
            header = f"Bearer {unquote(request.cookies[COOKIE])}"  # set encodeURIComponent'ed
        return self.require(self.authenticate(header), scope)

    def require(self, token: AuthToken, scope: str) -> AuthToken:
        if scope not in token.scopes:
            raise Forbidden(token.name, scope)
        return token

    def authenticate(self, header: str | None) -> AuthToken:
        if header is None:
            raise Unauthorized("send the header Authorization: Bearer <token>")
        kind, _, secret = header.strip().partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise Unauthorized("the Authorization header must be: Bearer <token>")
        presented = hashlib.sha256(secret.strip().encode()).digest()
        found: AuthToken | None = None
        for token in self.tokens:  # every one, matched or not: no early way out
            if hmac.compare_digest(presented, token.digest):
                found = token
        if found is None:
            raise Unauthorized("the token is not known")
        return found
