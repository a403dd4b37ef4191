"""The signed-in staff member of a console request (one dependency, ``staff``)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request

from service.runtime import Runtime
from service.staff.auth import COOKIE, SESSION_TTL_S, LoginRequired, Sessions, StaffSession


class SignedOut:
    """Sessions signed out before their cookie expires (in memory, one process).

    The cookie is signed, not stored, so signing out only makes the browser forget it;
    a copy (a shared computer, a proxy log) would keep working for the rest of its
    12 hours. Its nonce is remembered here until then and refused."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}

    def add(self, nonce: str, now: float) -> None:
        self.until = {n: t for n, t in self.until.items() if t > now}
        self.until[nonce] = now + SESSION_TTL_S

    def has(self, nonce: str, now: float) -> bool:
        return self.until.get(nonce, 0.0) > now


def signed_out(request: Request[Any, Any, Any]) -> SignedOut:
    registry: SignedOut = request.app.state.setdefault("staff_signed_out", SignedOut())
    return registry


def session_of(request: Request[Any, Any, Any], sessions: Sessions) -> tuple[str, str] | None:
    """(user name, nonce) of the request's genuine, unexpired, not signed-out cookie."""
    found = sessions.read(request.cookies.get(COOKIE))
    if found is None or signed_out(request).has(found[1], time.time()):
        return None
    return found


async def current_staff(request: Request[Any, Any, Any], runtime: Runtime,
                        sessions: Sessions) -> StaffSession:
    """The session's user, re-read (a disabled user or a new role counts at once)."""
    found = session_of(request, sessions)
    if found is None:
        raise LoginRequired()
    name, nonce = found
    user = await runtime.store.staff_user(name)
    if user is None or user.disabled_at is not None:
        raise LoginRequired()
    return StaffSession(name=user.name, role=user.role, nonce=nonce,
                        csrf=sessions.csrf_for(nonce))


def cookie_attributes(base_url: str) -> dict[str, Any]:
    """Secure, HttpOnly, SameSite=Strict, the whole site; no Max-Age (a session cookie)."""
    return {"httponly": True, "secure": True, "samesite": "strict", "path": "/"}
