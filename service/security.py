"""Headers every response carries: no inline script, no sniffing, no framing.

Added at the ASGI level (``before_send``) so static files, errors and pages all get
them, whatever kind of response object produced them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

BeforeSend = Callable[[Message, Scope], Awaitable[None]]


def security_headers(base_url: str) -> BeforeSend:
    https = base_url.startswith("https://")

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        # The API explorer under /schema loads its own script; every other page has none.
        is_html = (headers.get("content-type") or "").startswith("text/html")
        if is_html and not str(scope.get("path", "")).startswith("/schema"):
            headers.setdefault("Content-Security-Policy", CSP)
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")

    return before_send
