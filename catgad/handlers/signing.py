"""Standard Webhooks signing: secrets to keys, and the three headers of a signed request.

A request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per
active secret, separated by spaces, so a receiver that knows any one of the
secrets verifies it (rotation). Signatures are made by the official
`standardwebhooks` library, so they are exactly what its verifiers expect.

Secrets: `whsec_<base64>` is the form the official libraries take; any other
string is used as raw key bytes (UTF-8), which those libraries accept as
`Webhook(secret.encode())` in Python or `new Webhook(secret, {format: "raw"})`
in JavaScript.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

PREFIX = "whsec_"


class SecretError(ValueError):
    """A signing secret that cannot be used (a `whsec_` secret that is not base64)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret as written in the config."""
    if not secret.startswith(PREFIX):
        if not secret:
            raise SecretError("a signing secret must not be empty")
        return secret.encode()
    encoded = secret[len(PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(
            "a whsec_ secret is base64 after its prefix; this one is not "
            "(leave out the prefix to use the text itself as the key)"
        ) from None
    if not key:
        raise SecretError("the whsec_ secret is empty after its prefix")
    return key


class Signer:
    """Signs request bodies with every active secret (none: the request goes unsigned)."""

    __slots__ = ("_hooks",)

    def __init__(self, secrets: Sequence[str]) -> None:
        self._hooks = [Webhook(secret_key(s)) for s in secrets]

    @property
    def signs(self) -> bool:
        return bool(self._hooks)

    def headers(self, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
        stamp = int(time.time() if now is None else now)
        headers = {"webhook-id": message_id, "webhook-timestamp": str(stamp)}
        if self._hooks:
            when = datetime.fromtimestamp(stamp, UTC)
            text = body.decode()
            headers["webhook-signature"] = " ".join(
                hook.sign(message_id, when, text) for hook in self._hooks
            )
        return headers
