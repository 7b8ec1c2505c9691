"""The `service:` section: its schema fragment and how it is built."""

from __future__ import annotations

import hashlib
from typing import Any

from catgad.config.fragments import LISTEN, TYPE_NAME, Schema, closed, or_env, text
from catgad.config.loader import Path
from catgad.config.section import Building, Section
from catgad.service.model import SCOPES, AuthToken, ServiceConfig

_TOKEN = closed(
    "A token: who holds it, its secret and what it may do.",
    {
        "name": text("who holds it; named in 403s, never the secret"),
        "secret": text(
            "the bearer secret, e.g. ${FRONTEND_TOKEN}, or its digest `sha256:<64 hex>` so "
            "the config holds no plaintext"
        ),
        "scopes": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": list(SCOPES)},
        },
    },
    "name",
    "secret",
    "scopes",
)

SCHEMA: Schema = closed(
    "The service's name, HTTP address and access tokens.",
    {
        "name": text("Used as the CloudEvents source.", pattern=or_env(TYPE_NAME)),
        "listen": text(
            "HTTP address, host:port.",
            default="127.0.0.1:8080",
            pattern=or_env(LISTEN),
            patternErrorMessage="expected host:port, e.g. 127.0.0.1:8080",
        ),
        "auth": closed(
            "Bearer tokens and their scopes (SPEC section 12). Without it the API is open, "
            "and `catgad run` listens on loopback only unless --insecure.",
            {"tokens": {"type": "array", "minItems": 1, "items": _TOKEN}},
            "tokens",
        ),
    },
)


def build_service(raw: Any, ctx: Building) -> ServiceConfig:
    raw = raw if isinstance(raw, dict) else {}
    service = ServiceConfig(name=raw.get("name", "catgad"))
    listen = raw.get("listen")
    if listen is not None:
        host, _, port = str(listen).rpartition(":")
        if not host or not port.isdigit():  # the schema lets `${...}` through for editors
            ctx.reporter.error(("service", "listen"), "expected host:port, e.g. 127.0.0.1:8080")
        elif int(port) > 65535:
            ctx.reporter.error(("service", "listen"), f"port {port} is above 65535")
        else:
            service.host = host.removeprefix("[").removesuffix("]")
            service.port = int(port)
    service.auth = _tokens((raw.get("auth") or {}).get("tokens") or [], ctx)
    return service


def _tokens(raw: list[dict[str, Any]], ctx: Building) -> list[AuthToken]:
    tokens: list[AuthToken] = []
    names: dict[str, int] = {}
    digests: dict[bytes, str] = {}
    error = ctx.reporter.error
    for index, item in enumerate(raw):
        path: Path = ("service", "auth", "tokens", index)
        secret = str(item["secret"])
        if secret.startswith("sha256:"):
            hexed = secret.removeprefix("sha256:")
            if len(hexed) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hexed):
                error((*path, "secret"), "a sha256: secret is 64 hex digits")
                continue
            digest = bytes.fromhex(hexed)
        elif not secret.strip():
            error((*path, "secret"), "the secret is empty (is its ${VAR} set?)")
            continue
        else:
            digest = hashlib.sha256(secret.encode()).digest()
        if item["name"] in names:
            error((*path, "name"), f"tokens[{names[item['name']]}] has this name too")
            continue
        if digest in digests:
            error((*path, "secret"), f"token {digests[digest]!r} has this secret too")
            continue
        names[item["name"]] = index
        digests[digest] = item["name"]
        tokens.append(AuthToken(item["name"], digest, frozenset(item["scopes"])))
    return tokens


SERVICE = Section("service", SCHEMA, build_service, ServiceConfig, named=False)
