"""Staff sign-in: scrypt password hashes, a signed session cookie, CSRF per session.

The cookie (``Secure; HttpOnly; SameSite=Strict``) holds the user name and a random
session nonce, signed with the link keys (rotation included) and valid for
``SESSION_TTL_S``. Every request re-reads the user, so a disabled user or a changed
role takes effect at once. Forms carry a CSRF token derived from the nonce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from service.api.auth import may

COOKIE = "mailprefs_staff"
SESSION_TTL_S = 12 * 3600
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"scrypt${_N}${_R}${_P}${salt_b64}${digest_b64}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Spent on unknown user names too, so a login takes as long whether or not the name exists.
_DUMMY = hash_password(secrets.token_urlsafe(16))


def check_login(password: str, stored: str | None) -> bool:
    return check_password(password, stored or _DUMMY) and stored is not None


class LoginRequired(Exception):
    """No valid staff session (pages redirect to the login page; the API answers 401)."""


class RoleRequired(Exception):
    """Signed in, but the role may not do this (403)."""

    def __init__(self, role: str, needed: tuple[str, ...]) -> None:
        super().__init__(f"your role ({role}) may not do this; it needs {' or '.join(needed)}")


@dataclass(frozen=True)
class StaffSession:
    name: str
    role: str
    nonce: str
    csrf: str

    @property
    def actor(self) -> str:
        return f"staff:{self.name}"

    def need(self, *roles: str) -> None:
        if not may(self.role, *roles):
            raise RoleRequired(self.role, roles)

    def may(self, *roles: str) -> bool:
        return may(self.role, *roles)


class Sessions:
    def __init__(self, signing_keys: tuple[bytes, ...]) -> None:
        keys: Any = list(signing_keys)
        self._cookie = URLSafeTimedSerializer(keys, salt="mailprefs.staff-session")
        self._csrf = URLSafeTimedSerializer(keys, salt="mailprefs.staff-csrf")

    def new(self, name: str) -> str:
        """A cookie value for a fresh session."""
        return self._cookie.dumps({"u": name, "n": secrets.token_urlsafe(16)})

    def read(self, value: str | None) -> tuple[str, str] | None:
        """(user name, nonce) of a genuine, unexpired cookie."""
        if not value or len(value) > 1024:
            return None
        try:
            data = self._cookie.loads(value, max_age=SESSION_TTL_S)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str) \
                or not isinstance(data.get("n"), str):
            return None
        return data["u"], data["n"]

    def csrf_for(self, nonce: str) -> str:
        return self._csrf.dumps(nonce)

    def csrf_ok(self, nonce: str, token: str | None) -> bool:
        if not token or len(token) > 512:
            return False
        try:
            value = self._csrf.loads(token, max_age=SESSION_TTL_S)
        except BadSignature:
            return False
        return isinstance(value, str) and hmac.compare_digest(value, nonce)
