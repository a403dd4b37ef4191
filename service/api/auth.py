"""API bearer tokens and their roles.

Tokens created with ``mailprefs tokens create --role R`` are stored as SHA-256
digests with their role. Tokens in the environment variable named by
``[api] token_env`` are ``marketing`` tokens (the simplest set-up). Comparison of
environment tokens is constant-time; stored ones are found by digest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from service.runtime import Runtime

ROLES = ("admin", "privacy", "marketing")
ENV_TOKEN_ROLE = "marketing"  # noqa: S105 (a role, not a secret)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.strip().encode("utf-8")).digest()


def may(role: str, *needed: str) -> bool:
    """``admin`` may do everything; the others what their role names."""
    return role == "admin" or role in needed


class ApiTokens:
    def __init__(self, env_var: str) -> None:
        raw = os.environ.get(env_var, "")
        # Keep only digests, so the tokens themselves do not sit in memory dumps as-is.
        self._digests = [token_digest(t) for t in raw.split(",") if t.strip()]
        self.env_var = env_var

    async def role_of(self, header: str | None, runtime: Runtime) -> tuple[str, str] | None:
        """(role, actor) of a bearer header, or None."""
        if not header or not header.startswith("Bearer "):
            return None
        digest = token_digest(header[7:])
        found = False
        for known in self._digests:  # no early exit: constant time in the token list
            found |= hmac.compare_digest(known, digest)
        if found:
            return ENV_TOKEN_ROLE, "api"
        stored = await runtime.store.api_token_by_digest(digest)
        return (stored.role, f"token:{stored.id}") if stored is not None else None


def api_role(*roles: str) -> Any:
    """A guard: a bearer token whose role may do this."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
                    ) -> None:
        tokens: ApiTokens = connection.app.state["api_tokens"]
        runtime: Runtime = connection.app.state["runtime"]
        found = await tokens.role_of(connection.headers.get("authorization"), runtime)
        if found is None:
            raise NotAuthorizedException(
                detail="a valid bearer token is needed (Authorization: Bearer ...)",
                headers={"WWW-Authenticate": 'Bearer realm="mailprefs"'},
            )
        role, actor = found
        if not may(role, *roles):
            raise PermissionDeniedException(
                detail=f"this token's role ({role}) may not do this; it needs "
                       f"{' or '.join(roles)}")
        connection.scope["mailprefs_actor"] = actor  # type: ignore[typeddict-unknown-key]

    return guard


bearer_guard = api_role("marketing")
"""The marketing API: links, status, imports, checks."""
