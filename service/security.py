"""Headers every response carries, and logs that carry no personal data.

Headers are added at the ASGI level (``before_send``) so static files, errors, redirects,
API answers and pages all get them, whatever kind of response object produced them:
a Content-Security-Policy without inline script, ``nosniff``, no framing; on token URLs
(``/u/``, ``/p/``, ``/m/``, ``/confirm/``, ``/renew/``) also ``no-referrer`` and
``no-store`` (the token is the recipient's key); HSTS when ``base_url`` is https.

Logging (``logging_config``): the level comes from ``MAILPREFS_LOG_LEVEL`` (default
INFO). Libraries that log whole request URLs or bodies (httpx, botocore, aiosqlite, ...:
some mailing tools put an address or its MD5 into the URL) stay at WARNING whatever that
level, and a filter on every handler replaces addresses, URL-encoded addresses and
MD5/SHA-256-sized hex digests in any record that still carries one.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.logging.config import LoggingConfig, default_handlers
from litestar.types import Message, Scope

from suppression.config import ConfigError

CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Pages: no script at all, styles only from our own stylesheet."""

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""Everything that is not a page (JSON, CSV, text, CSS, redirects): load nothing."""

SCHEMA_CSP = (
    "default-src 'self'; script-src 'self' https://unpkg.com; "
    "style-src 'self' 'unsafe-inline' https://unpkg.com; img-src 'self' https: data:; "
    "font-src 'self' https: data:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
"""The API explorer under /schema (Stoplight Elements, a web component without inline
script) loads its script and stylesheet from its CDN; still no inline script."""

TOKEN_PREFIXES = ("/u/", "/p/", "/m/", "/confirm/", "/renew/")
"""Paths that carry a recipient's token: never cached, never sent on as a Referer."""

BeforeSend = Callable[[Message, Scope], Awaitable[None]]


def security_headers(base_url: str) -> BeforeSend:
    https = base_url.startswith("https://")

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        path = str(scope.get("path", ""))
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        is_html = (headers.get("content-type") or "").startswith("text/html")
        if not is_html:
            policy = API_CSP
        elif path == "/schema" or path.startswith("/schema/"):
            policy = SCHEMA_CSP
        else:
            policy = CSP
        headers.setdefault("Content-Security-Policy", policy)
        if path.startswith(TOKEN_PREFIXES):
            # Whatever answered (a page, one-click's text, a 413 or 405 from the
            # framework): the URL holds a token.
            headers["Referrer-Policy"] = "no-referrer"
            headers["Cache-Control"] = "no-store"
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")

    return before_send


# logging ---------------------------------------------------------------------------------
LOG_LEVEL_ENV = "MAILPREFS_LOG_LEVEL"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

QUIET_LIBRARIES = ("httpx", "httpcore", "hpack", "aiosqlite", "botocore", "boto3",
                   "urllib3", "s3transfer", "multipart", "asyncio")
"""Loggers that record request URLs, headers, bodies or SQL parameters at INFO/DEBUG."""

# Anything shaped like an address (also inside URLs and quoted strings) ...
_ADDRESS = re.compile(r"[^\s<>\"'(),;:@/?&=\[\]]+@[^\s<>\"'(),;:@/?&=\[\]]+")
# ... URL-encoded (%40), as in a path or query string ...
_ENCODED_ADDRESS = re.compile(r"[^\s<>\"'(),;:@/?&=\[\]]+%40[^\s<>\"'(),;:@/?&=\[\]]+",
                              re.IGNORECASE)
# ... and MD5 / SHA-256 hex digests (partner hashes, Mailchimp member ids, keyed hashes).
_DIGEST = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{32})(?![0-9A-Fa-f])")


def scrub(text: str) -> str:
    """``text`` with addresses and address hashes replaced by placeholders."""
    if "@" in text:
        text = _ADDRESS.sub("<address>", text)
    if "%" in text:
        text = _ENCODED_ADDRESS.sub("<address>", text)
    return _DIGEST.sub("<digest>", text)


class PersonalDataFilter(logging.Filter):
    """Rewrites a record so that no address or address hash reaches a log handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw template, scrubbed
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def log_level() -> str:
    """The level of mailprefs' logs from ``MAILPREFS_LOG_LEVEL`` (default INFO)."""
    value = os.environ.get(LOG_LEVEL_ENV, "").strip().upper() or "INFO"
    if value not in LOG_LEVELS:
        raise ConfigError("environment", LOG_LEVEL_ENV,
                          f"{value[:20]!r} is not one of {', '.join(LOG_LEVELS)}")
    return value


def logging_config() -> LoggingConfig:
    """The service's logging: our level, quiet libraries, a privacy filter on every handler."""
    level = log_level()
    quiet = "WARNING" if level in ("DEBUG", "INFO") else level
    # Litestar's own handlers (they differ between Python versions), each with the filter.
    handlers: dict[str, dict[str, Any]] = {
        name: {**copy.deepcopy(spec), "filters": ["no_personal_data"]}
        for name, spec in default_handlers.items()
    }
    return LoggingConfig(
        filters={"no_personal_data": {"()": PersonalDataFilter}},
        handlers=handlers,
        root={"handlers": ["queue_listener"], "level": level},
        loggers={
            "litestar": {"level": level, "handlers": ["queue_listener"], "propagate": False},
            "mailprefs": {"level": level},
            **{name: {"level": quiet} for name in QUIET_LIBRARIES},
        },
    )
