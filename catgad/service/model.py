"""The service as configured: its name (the CloudEvents source), where it listens, its tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

SCOPES = ("commands", "read", "approve", "manage")  # what a token may be allowed (SPEC 12)


@dataclass(frozen=True, slots=True)
class AuthToken:
    """`service.auth.tokens[]`: kept as the SHA-256 digest of its secret, never the secret."""

    name: str
    digest: bytes
    scopes: frozenset[str]


@dataclass(slots=True)
class ServiceConfig:
    name: str = "catgad"
    host: str = "127.0.0.1"
    port: int = 8080
    auth: list[AuthToken] = field(default_factory=list)  # empty: the API is open
