"""The dashboard at /ui: plain ES modules and CSS shipped in the package, no build, nothing
fetched from elsewhere; every figure it shows comes from the JSON API.

- `GET /ui` (scope `read`): the page, opening on the operator inbox (catgad.http.inbox);
  the rest is reached by its links (`/ui#/projections`, `#/sagas/<name>/<id>`, ...).
- `GET /ui/static/<file>` (scope `read`): its scripts and style sheet.
- `GET /ui/signin` (open: a form, no data): where a browser without a token is sent
  when the service has tokens.

How a browser passes its token: the sign-in page checks it against `GET /inbox`,
then keeps it in the session cookie COOKIE (path /ui, SameSite=Strict; gone when
the browser closes), which lets the browser load the page and its files; the
page's scripts read it from there and send `Authorization: Bearer <token>` on
every API call. The API itself never reads the cookie (catgad.http.access).
Without tokens in the config the API is open and no sign-in is asked.

The page's answers carry a Content-Security-Policy allowing only this origin, so
nothing from a stored event (shown as text, never as markup) can run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catgad.errors import NotFound
from catgad.http.access import COOKIE, OPEN, Access
from catgad.projections.section import PROJECTIONS
from catgad.reactors.feature import reactors_of
from catgad.runtime import Runtime
from catgad.service.model import AuthToken

SIGNIN = "/ui/signin"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _files() -> dict[str, bytes]:
    folder = resources.files("catgad.http") / "static"
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}


class UiEndpoints:
    def __init__(self, runtime: Runtime, access: Access) -> None:
        self.runtime = runtime
        self.access = access
        self.files = _files()
        self.etags = {
            n: '"' + hashlib.sha256(b).hexdigest()[:16] + '"' for n, b in self.files.items()
        }

    def routes(self, access: Access) -> list[Route]:
        return [
            access.route("read", "/ui", self.page, "GET", signin=SIGNIN),
            access.route("read", "/ui/static/{name}", self.static, "GET", signin=SIGNIN),
            access.route(OPEN, SIGNIN, self.signin, "GET"),
        ]

    def _html(self, name: str, meta: dict[str, Any]) -> Response:
        # JSON in a <script> element: "</" must not close it
        data = json.dumps(meta).replace("</", "<\\/")
        body = self.files[name].replace(b"{{META}}", data.encode())
        return Response(body, media_type="text/html", headers=_headers(self.files[name]))

    async def page(self, request: Request) -> Response:
        return self._html("index.html", self.meta(request))

    async def signin(self, request: Request) -> Response:
        return self._html("signin.html", {"auth": self.access.enabled, "cookie": COOKIE})

    async def static(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        if name.endswith(".html") or name not in self.files:
            raise NotFound("dashboard file", name)
        etag = self.etags[name]
        headers = {**_headers(), "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        kind = _TYPES.get(name[name.rfind(".") :], "application/octet-stream")
        return Response(self.files[name], media_type=kind, headers=headers)

    def meta(self, request: Request) -> dict[str, Any]:
        """What the page needs to know before its first call: the service, the names of what
        it runs, and the token's name and scopes (to offer only the actions it may take)."""
        config = self.runtime.config
        token = getattr(request.state, "token", None)
        return {
            "service": config.service.name,
            "auth": self.access.enabled,
            "cookie": COOKIE,
            "token": token.name if isinstance(token, AuthToken) else None,
            "scopes": sorted(token.scopes) if isinstance(token, AuthToken) else None,
            **{reactor.key: reactor.page() for reactor in reactors_of(config)},
            "projections": sorted(PROJECTIONS.of(config)),
        }


# bare <script> and <style> elements (a JSON data block has attributes and does not run)
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.S)


def _policy(page: bytes | None) -> str:
    """The page's policy: this origin, and the inline script and style of a page that has
    them (the sign-in page, which cannot load files before it has a token) by their hashes."""
    if page is None:
        return _POLICY
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for kind, text in _INLINE.findall(page):
        digest = base64.b64encode(hashlib.sha256(text).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    policy = _POLICY
    for kind, found in hashes.items():
        if found:
            src = f"{kind.decode()}-src 'self'"
            policy = policy.replace(src, " ".join([src, *found]))
    return policy


def _headers(page: bytes | None = None) -> dict[str, str]:
    return {
        "Content-Security-Policy": _policy(page),
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
