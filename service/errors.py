"""The one place that maps errors to HTTP answers.

API clients get RFC 9457 problem JSON; nobody ever gets a stack trace. Recipient
pages register their own friendly HTML rendering through ``page_renderer``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from service.staff.actions import ActionError
from service.staff.auth import LoginRequired, RoleRequired
from suppression.addresses import InvalidAddress
from suppression.rights import UnknownPerson
from suppression.store import StoreBusy, StoreError
from suppression.subscriptions import ContactNotFound
from suppression.suppression_list import NothingToLift, RefusedLift, UnknownTopic
from suppression.tokens import TokenExpired, TokenInvalid
from sync.connector import WebhookRejected

log = logging.getLogger("mailprefs.errors")

PROBLEM_JSON = "application/problem+json"

# domain error -> (status, title)
_DOMAIN: dict[type[Exception], tuple[int, str]] = {
    InvalidAddress: (422, "Invalid address"),
    UnknownTopic: (422, "Unknown topic"),
    RefusedLift: (409, "Suppression cannot be lifted"),
    NothingToLift: (404, "No such suppression"),
    TokenInvalid: (400, "Invalid link"),
    ContactNotFound: (404, "Unknown link"),
    TokenExpired: (410, "Link expired"),
    ActionError: (422, "Cannot do that"),
    UnknownPerson: (404, "Nothing held"),
    StoreBusy: (503, "Database busy"),
    StoreError: (503, "Database unavailable"),
}

PageRenderer = Callable[[Request[Any, Any, Any], int, str, Exception], Response[Any] | None]
"""Renders a friendly page for requests it recognises (recipient pages), else None."""


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> Response[Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    headers = {"Retry-After": "1"} if status == 503 else None
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def classify(exc: Exception) -> tuple[int, str, str | None]:
    """(status, title, detail) for any exception; details only for errors we understand."""
    if isinstance(exc, WebhookRejected):
        return exc.status, "Webhook refused", exc.problem
    if isinstance(exc, LoginRequired):
        return 401, "Sign in needed", "sign in at /staff/login"
    if isinstance(exc, RoleRequired):
        return 403, "Not allowed", str(exc)
    for kind, (status, title) in _DOMAIN.items():
        if isinstance(exc, kind):
            return status, title, str(exc)
    if isinstance(exc, ValidationException):
        return exc.status_code, "Invalid request", exc.detail
    if isinstance(exc, HTTPException):
        return exc.status_code, exc.detail or "Error", None
    return HTTP_500_INTERNAL_SERVER_ERROR, "Internal error", None


def _handle(
    request: Request[Any, Any, Any], exc: Exception, renderers: Sequence[PageRenderer]
) -> Response[Any]:
    status, title, detail = classify(exc)
    if status >= 500 and not isinstance(exc, StoreError):
        # Type and route only: exception text can contain request data.
        log.error("unhandled %s on %s", type(exc).__name__, request.scope.get("path_template"))
    elif isinstance(exc, StoreError):
        log.warning("store unavailable: %s", exc)
    path = request.scope.get("path", "")
    if isinstance(exc, LoginRequired) and path.startswith("/staff"):
        # A console page without a session: to the login page (no JavaScript needed).
        return Response(b"", status_code=303, headers={"Location": "/staff/login"})
    for render in renderers if not _sent_json(request) else ():
        page = render(request, status, title, exc)
        if page is not None:
            return page
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        extra["errors"] = exc.extra
    response = problem(status, title, detail, **extra)
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)
    return response


def _sent_json(request: Request[Any, Any, Any]) -> bool:
    """A client that sent JSON (POST /subscribe as JSON) reads problem JSON, not a page."""
    content_type = request.headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def exception_handlers(
    renderers: Sequence[PageRenderer] = (),
) -> dict[type[Exception], Callable[[Request[Any, Any, Any], Exception], Response[Any]]]:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return _handle(request, exc, renderers)

    return {Exception: handle}
