"""Small pieces every recipient route uses: evidence, forms, CSRF, rate limits."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.datastructures import FormMultiDict
from litestar.exceptions import ClientException, HTTPException, InternalServerException

from service.runtime import Runtime
from suppression.ledger import Evidence
from suppression.store import Contact
from suppression.subscriptions import ContactNotFound, Who
from suppression.tokens import Purpose, TokenError, TokenPayload, Tokens

MAX_HEADER_EVIDENCE = 300


def evidence(
    request: Request[Any, Any, Any], token: str | None = None, note: str | None = None
) -> Evidence:
    """What proves a recipient's request: their IP, user agent and which token they used."""
    ip = request.client.host if request.client else None
    agent = (request.headers.get("user-agent") or "")[:MAX_HEADER_EVIDENCE] or None
    return Evidence(
        ip=ip, user_agent=agent, token_id=Tokens.token_id(token) if token else None, note=note
    )


def who(
    request: Request[Any, Any, Any],
    channel: str,
    clock: Callable[[], float],
    token: str | None = None,
    note: str | None = None,
) -> Who:
    return Who(
        channel=channel,
        actor="recipient",
        evidence=evidence(request, token, note),
        at=datetime.fromtimestamp(clock(), UTC),
    )


async def read_form(request: Request[Any, Any, Any]) -> FormMultiDict:
    """The body as a form (urlencoded or multipart); anything else is an empty form."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return FormMultiDict()
    try:
        return await request.form()
    except InternalServerException:
        # Litestar's "client disconnected prematurely": nobody is waiting for an answer.
        raise ClientException("the client went away before sending the whole body") from None
    except HTTPException:
        raise
    except Exception:  # a malformed multipart body is the client's fault, not ours
        raise ClientException("malformed form body") from None


def csrf_token(tokens: Tokens, contact_id: int, form: str) -> str:
    return tokens.sign(Purpose.FORM, TokenPayload(contact_id, extra=form))


def check_csrf(tokens: Tokens, value: str | None, contact_id: int, form: str) -> None:
    """A signed, short-lived, per-contact, per-form token; no cookie involved."""
    try:
        payload = tokens.verify(Purpose.FORM, value or "")
    except TokenError:
        raise ClientException("the form has expired or did not come from our page") from None
    if payload.contact_id != contact_id or payload.extra != form:
        raise ClientException("the form did not come from this page")


async def known_contact(runtime: Runtime, contact_id: int) -> Contact:
    """The contact a genuine token names; a token for a contact we do not have is a 404."""
    contact = await runtime.store.contact(contact_id)
    if contact is None:
        raise ContactNotFound(contact_id)
    return contact


class RateLimited(HTTPException):
    status_code = 429


class RateLimiter:
    """Sliding window per (bucket, client IP), in memory (one process)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.hits: dict[tuple[str, str], deque[float]] = {}

    def check(self, bucket: str, request: Request[Any, Any, Any]) -> None:
        key = (bucket, request.client.host if request.client else "-")
        now = self.clock()
        window = self.hits.setdefault(key, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.per_minute:
            retry = max(1, int(window[0] + 60 - now) + 1)
            raise RateLimited(detail="too many requests", headers={"Retry-After": str(retry)})
        window.append(now)
        if len(self.hits) > 100_000:  # bound memory under a flood of distinct addresses
            self.hits = {k: v for k, v in self.hits.items() if v and v[-1] > now - 60}
