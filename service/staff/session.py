"""The signed-in staff member of a console request (one dependency, ``staff``)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from service.runtime import Runtime
from service.staff.auth import COOKIE, LoginRequired, Sessions, StaffSession


async def current_staff(request: Request[Any, Any, Any], runtime: Runtime,
                        sessions: Sessions) -> StaffSession:
    """The session's user, re-read (a disabled user or a new role counts at once)."""
    found = sessions.read(request.cookies.get(COOKIE))
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
