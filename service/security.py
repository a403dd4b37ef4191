"""Headers every response carries: no inline script, no sniffing, no framing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Response

from suppression.config import Settings

CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def security_headers(settings: Settings) -> Callable[[Response[Any]], Awaitable[Response[Any]]]:
    https = settings.base_url.startswith("https://")

    async def add(response: Response[Any]) -> Response[Any]:
        headers = response.headers
        schema_page = False
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        # The API explorer under /schema loads its own script; every other page has none.
        if str(response.media_type or "").startswith("text/html") and not schema_page:
            headers.setdefault("Content-Security-Policy", CSP)
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    return add
