"""Bearer tokens for the API: read from an environment variable, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler


class ApiTokens:
    def __init__(self, env_var: str) -> None:
        raw = os.environ.get(env_var, "")
        # Keep only digests, so the tokens themselves do not sit in memory dumps as-is.
        self._digests = [
            hashlib.sha256(t.strip().encode()).digest() for t in raw.split(",") if t.strip()
        ]
        self.env_var = env_var

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        digest = hashlib.sha256(header[7:].strip().encode()).digest()
        found = False
        for known in self._digests:  # no early exit: constant time in the token list
            found |= hmac.compare_digest(known, digest)
        return found


def bearer_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    tokens: ApiTokens = connection.app.state["api_tokens"]
    if not tokens.check(connection.headers.get("authorization")):
        raise NotAuthorizedException(
            detail="a valid bearer token is needed (Authorization: Bearer ...)",
            headers={"WWW-Authenticate": 'Bearer realm="mailprefs"'},
        )
