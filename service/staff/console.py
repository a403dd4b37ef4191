"""The staff console (/staff): server-rendered pages, no JavaScript needed.

Every page needs a signed-in staff member (``current_staff``; without one the error
mapper sends the browser to /staff/login) and a role that may see it. Every form that
changes anything is a POST carrying the session's CSRF token; GET never changes a thing.
Addresses travel in form bodies, never in URLs. The console is English only.

Roles: ``privacy`` (review queue, rights requests), ``marketing`` (sync status; no inbox
content), ``admin`` (users and API tokens, and everything else).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response, Router, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.params import FromPath
from markupsafe import Markup

from service.api.auth import ROLES
from service.errors import classify
from service.recipient.common import read_form
from service.recipient.pages import PAGE_HEADERS, TEMPLATES
from service.runtime import Runtime
from service.staff import actions
from service.staff.actions import ActionError
from service.staff.auth import (
    COOKIE,
    LoginRequired,
    RoleRequired,
    Sessions,
    StaffSession,
    check_login,
)
from service.staff.session import cookie_attributes, current_staff, session_of, signed_out
from service.sync_job import sync_status
from suppression.rights import UnknownPerson
from suppression.store import InboxItem

LOGIN_FAILURES_PER_MINUTE = 10
MAX_TOKEN_NAME = 80
DECISION_WORDS = {"apply": "applied", "dismiss": "dismissed", "done": "marked done"}
_ADDRESS_SPLIT = re.compile(r"[,;\s]+")

Html = Response[str]


# rendering -----------------------------------------------------------------------------
def _when(value: object) -> Markup | str:
    """An ISO timestamp as "2026-03-04 09:15:02 UTC", wrapping only between date and
    time (short enough for a phone)."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # autoescaped as any other text
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    clock = moment.strftime("%H:%M:%S") + (" UTC" if moment.tzinfo is not None else "")
    return Markup('<span class="nowrap">{}</span> <span class="nowrap">{}</span>').format(
        moment.strftime("%Y-%m-%d"), clock)


@cache
def _env() -> Environment:
    """The staff templates (service/templates/staff/), autoescaped like every page."""
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, auto_reload=False)
    env.filters["when"] = _when
    return env


def _page(template: str, *, staff: StaffSession | None, title: str, status: int = 200,
          section: str = "", notice: str | None = None, error: str | None = None,
          **context: Any) -> Html:
    html = _env().get_template(f"staff/{template}").render(
        staff=staff, title=title, section=section, notice=notice, error=error, **context)
    return Response(html, status_code=status, media_type="text/html",
                    headers=dict(PAGE_HEADERS))


def _redirect(location: str) -> Response[bytes]:
    return Response(b"", status_code=303, headers={"Location": location, **PAGE_HEADERS})


def _message(staff: StaffSession | None, title: str, lines: list[str], *, status: int = 200,
             section: str = "", links: list[tuple[str, str]] | None = None,
             secret: str | None = None) -> Html:
    return _page("message.html", staff=staff, title=title, status=status, section=section,
                 lines=lines, links=links or [], secret=secret)


def _error_page(request: Request[Any, Any, Any], exc: Exception) -> Html:
    """Role and CSRF refusals (and stray action errors) as a page, not bare JSON."""
    status, title, detail = classify(exc)
    if isinstance(exc, HTTPException):
        title, detail = "Not allowed" if status == 403 else "Cannot do that", exc.detail
    return _message(None, title, [detail or "This cannot be done."], status=status,
                    links=[("/staff", "Back to the console")])


# sessions, forms, roles ------------------------------------------------------------------
async def _staff(request: Request[Any, Any, Any], runtime: Runtime, sessions: Sessions,
                 *roles: str) -> StaffSession:
    staff = await current_staff(request, runtime, sessions)
    if roles:
        staff.need(*roles)
    return staff


async def _post(request: Request[Any, Any, Any], runtime: Runtime, sessions: Sessions,
                *roles: str) -> tuple[StaffSession, FormMultiDict]:
    """The signed-in member and their form, after the CSRF and role checks. The CSRF
    token is checked first, against the cookie's own session: a form without it is
    refused (403) even when that session has since been signed out (then: sign in)."""
    found = sessions.read(request.cookies.get(COOKIE))
    if found is None:
        raise LoginRequired()
    form = await read_form(request)
    if not sessions.csrf_ok(found[1], _field(form, "csrf")):
        raise PermissionDeniedException(
            "the form has expired or did not come from this console: reload the page")
    staff = await _staff(request, runtime, sessions, *roles)
    return staff, form


def _field(form: FormMultiDict, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""  # the body limit bounds it


def _today(runtime: Runtime) -> str:
    return datetime.fromtimestamp(runtime.clock(), UTC).date().isoformat()


def _overdue(item: InboxItem, today: str) -> bool:
    return item.due_date is not None and item.due_date < today


class LoginThrottle:
    """Failed sign-ins per client IP in a sliding minute (in memory, one process).

    While an IP is over the limit every attempt from it is refused before the password
    is even checked, so guessing cannot continue."""

    def __init__(self, per_minute: int = LOGIN_FAILURES_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.failures: dict[str, deque[float]] = {}

    def _window(self, ip: str) -> deque[float]:
        now = self.clock()
        window = self.failures.setdefault(ip, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        return window

    def retry_after(self, ip: str) -> int | None:
        """Seconds to wait, or None when the IP may try."""
        window = self._window(ip)
        if len(window) < self.per_minute:
            return None
        return max(1, int(window[0] + 60 - self.clock()) + 1)

    def failed(self, ip: str) -> None:
        self._window(ip).append(self.clock())
        if len(self.failures) > 100_000:  # bound memory under a flood of distinct IPs
            now = self.clock()
            self.failures = {k: v for k, v in self.failures.items() if v and v[-1] > now - 60}


def _throttle(request: Request[Any, Any, Any]) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.setdefault("staff_login_throttle",
                                                           LoginThrottle())
    return throttle


def _ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "-"


# sign in and out -----------------------------------------------------------------------
@get("/staff/login", include_in_schema=False)
async def login_page(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                     sessions: NamedDependency[Sessions]) -> Response[Any]:
    found = session_of(request, sessions)
    if found is not None:
        user = await runtime.store.staff_user(found[0])
        if user is not None and user.disabled_at is None:
            return _redirect("/staff")
    return _page("login.html", staff=None, title="Sign in", name="")


@post("/staff/login", status_code=200, include_in_schema=False)
async def login_post(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                     sessions: NamedDependency[Sessions]) -> Response[Any]:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise PermissionDeniedException("sign in from the console's own page")
    throttle, ip = _throttle(request), _ip(request)
    form = await read_form(request)
    name = _field(form, "name")
    wait = throttle.retry_after(ip)
    if wait is not None:
        refused = _page("login.html", staff=None, title="Sign in", status=429, name=name,
                        error="Too many failed sign-ins from here: wait a minute and try "
                              "again.")
        refused.headers["Retry-After"] = str(wait)
        return refused
    value = form.get("password")
    password = value if isinstance(value, str) else ""
    user = await runtime.store.staff_user(name) if name else None
    stored = user.password_hash if user is not None and user.disabled_at is None else None
    if not await asyncio.to_thread(check_login, password, stored):
        throttle.failed(ip)
        return _page("login.html", staff=None, title="Sign in", status=401, name=name,
                     error="Wrong name or password.")
    signed_in = _redirect("/staff")
    signed_in.set_cookie(COOKIE, sessions.new(name),
                         **cookie_attributes(runtime.settings.base_url))
    return signed_in


@post("/staff/logout", status_code=200, include_in_schema=False)
async def logout(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                 sessions: NamedDependency[Sessions]) -> Response[bytes]:
    staff, _ = await _post(request, runtime, sessions)
    signed_out(request).add(staff.nonce, time.time())  # a copy of the cookie dies too
    response = _redirect("/staff/login")
    response.set_cookie(COOKIE, "", max_age=0, expires=0,
                        **cookie_attributes(runtime.settings.base_url))
    return response


# dashboard -------------------------------------------------------------------------------
@get("/staff", include_in_schema=False)
async def dashboard(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                    sessions: NamedDependency[Sessions]) -> Html:
    staff = await _staff(request, runtime, sessions)
    counts: dict[str, int] | None = None
    if staff.may("privacy"):
        today = _today(runtime)
        queue = await runtime.store.inbox_queue()
        by_state = await runtime.store.inbox_counts()
        counts = {"queued": by_state.get("queued", 0),
                  "overdue": sum(1 for i in queue if _overdue(i, today))}
    return _page("dashboard.html", staff=staff, title="Staff console", section="home",
                 counts=counts)


# the review queue --------------------------------------------------------------------------
def _int_query(request: Request[Any, Any, Any], name: str) -> int | None:
    value = request.query_params.get(name)
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 12 \
        else None


@get("/staff/queue", include_in_schema=False)
async def queue_page(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                     sessions: NamedDependency[Sessions]) -> Html:
    staff = await _staff(request, runtime, sessions, "privacy")
    today = _today(runtime)
    items = await runtime.store.inbox_queue()
    items.sort(key=lambda i: not _overdue(i, today))  # stable: the store's order otherwise
    notice = None
    done_id = _int_query(request, "done")
    if done_id is not None:
        handled = await runtime.store.inbox_item(done_id)
        if handled is not None and handled.state != "queued":
            notice = f"Message #{handled.id}: {handled.state}."
    return _page("queue.html", staff=staff, title="Review queue", section="queue",
                 notice=notice, items=[(i, _overdue(i, today)) for i in items])


def _item_page(staff: StaffSession, item: InboxItem, today: str, *, status: int = 200,
               error: str | None = None, addresses: str | None = None) -> Html:
    return _page("item.html", staff=staff, title=f"Message #{item.id}", section="queue",
                 status=status, error=error, item=item, overdue=_overdue(item, today),
                 addresses=", ".join(item.addresses) if addresses is None else addresses)


@get("/staff/queue/{item_id:int}", include_in_schema=False)
async def item_page(item_id: FromPath[int], request: Request[Any, Any, Any],
                    runtime: NamedDependency[Runtime],
                    sessions: NamedDependency[Sessions]) -> Html:
    staff = await _staff(request, runtime, sessions, "privacy")
    found = await runtime.store.inbox_item(item_id)
    if found is None:
        return _message(staff, "No such message", [f"There is no message #{item_id}."],
                        status=404, section="queue", links=[("/staff/queue", "The queue")])
    return _item_page(staff, found, _today(runtime))


def _addresses(text: str) -> list[str]:
    return [a for a in _ADDRESS_SPLIT.split(text) if a]


@post("/staff/queue/{item_id:int}", status_code=200, include_in_schema=False)
async def item_decide(item_id: FromPath[int], request: Request[Any, Any, Any],
                      runtime: NamedDependency[Runtime],
                      sessions: NamedDependency[Sessions]) -> Response[Any]:
    staff, form = await _post(request, runtime, sessions, "privacy")
    decision = _field(form, "decision")
    typed = _field(form, "addresses") if decision == "apply" else None
    try:
        await actions.decide(runtime, item_id, decision, staff.actor,
                             _addresses(typed) if typed is not None else None)
    except (ActionError, ValueError) as exc:
        found = await runtime.store.inbox_item(item_id)
        if found is None:
            return _message(staff, "No such message", [str(exc)], status=404,
                            section="queue", links=[("/staff/queue", "The queue")])
        return _item_page(staff, found, _today(runtime), status=422, error=str(exc),
                          addresses=typed)
    return _redirect(f"/staff/queue?done={item_id}")


# people and their rights ---------------------------------------------------------------------
@get("/staff/contacts", include_in_schema=False)
async def contacts_page(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                        sessions: NamedDependency[Sessions]) -> Html:
    staff = await _staff(request, runtime, sessions, "privacy")
    return _contacts(staff)


def _contacts(staff: StaffSession, *, address: str = "", person: dict[str, Any] | None = None,
              status: int = 200, error: str | None = None) -> Html:
    return _page("contacts.html", staff=staff, title="Contacts", section="contacts",
                 status=status, error=error, address=address, person=person)


async def _export(runtime: Runtime, staff: StaffSession, address: str
                  ) -> dict[str, Any] | Html:
    """The person's export, or the search page saying why there is none."""
    if not address:
        return _contacts(staff, status=422, error="Give an address.")
    try:
        return await actions.export_person(runtime, address, staff.actor)
    except UnknownPerson as exc:
        return _contacts(staff, address=address, status=404, error=f"{address}: {exc}.")
    except (ActionError, ValueError) as exc:
        return _contacts(staff, address=address, status=422, error=str(exc))


@post("/staff/contacts", status_code=200, include_in_schema=False)
async def contacts_search(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                          sessions: NamedDependency[Sessions]) -> Html:
    staff, form = await _post(request, runtime, sessions, "privacy")
    address = _field(form, "address")
    person = await _export(runtime, staff, address)
    if isinstance(person, Response):
        return person
    return _contacts(staff, address=address, person=person)


@post("/staff/rights/export", status_code=200, include_in_schema=False)
async def rights_export(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                        sessions: NamedDependency[Sessions]) -> Response[Any]:
    staff, form = await _post(request, runtime, sessions, "privacy")
    person = await _export(runtime, staff, _field(form, "address"))
    if isinstance(person, Response):
        return person
    body = json.dumps(person, ensure_ascii=False, indent=2).encode("utf-8")
    return Response(body, media_type="application/json", headers={
        **PAGE_HEADERS, "Content-Disposition": 'attachment; filename="export.json"'})


@post("/staff/rights/rectify", status_code=200, include_in_schema=False)
async def rights_rectify(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                         sessions: NamedDependency[Sessions]) -> Html:
    staff, form = await _post(request, runtime, sessions, "privacy")
    old, new = _field(form, "old"), _field(form, "new")
    back = [("/staff/contacts", "Search another contact")]
    if not old or not new:
        return _message(staff, "Not rectified", ["Give the old and the new address."],
                        status=422, section="contacts", links=back)
    try:
        done = await actions.rectify(runtime, old, new, staff.actor)
    except UnknownPerson as exc:
        return _message(staff, "Not rectified", [f"{old}: {exc}."], status=404,
                        section="contacts", links=back)
    except (ActionError, ValueError) as exc:
        return _message(staff, "Not rectified", [str(exc)], status=422, section="contacts",
                        links=back)
    moved = ", ".join(done.moved) or "none"
    return _message(staff, "Address rectified", [
        f"{old} is now {new}.",
        f"Subscriptions moved: {moved}. Opt-outs followed the person; the old address "
        "stays suppressed.",
    ], section="contacts", links=back)


@post("/staff/rights/forget", status_code=200, include_in_schema=False)
async def rights_forget(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                        sessions: NamedDependency[Sessions]) -> Html:
    staff, form = await _post(request, runtime, sessions, "privacy")
    address = _field(form, "address")
    back = [("/staff/contacts", "Search another contact")]
    if not address:
        return _message(staff, "Not erased", ["Give an address."], status=422,
                        section="contacts", links=back)
    if _field(form, "confirm") != "yes":
        person = await _export(runtime, staff, address)
        if isinstance(person, Response):
            return person
        return _contacts(staff, address=address, person=person, status=422,
                         error="Nothing was erased: tick the box to confirm the erasure.")
    try:
        done = await actions.forget(runtime, address, staff.actor)
    except UnknownPerson as exc:
        return _message(staff, "Not erased", [f"{address}: {exc}."], status=404,
                        section="contacts", links=back)
    except (ActionError, ValueError) as exc:
        return _message(staff, "Not erased", [str(exc)], status=422, section="contacts",
                        links=back)
    if done.already:
        lines = [f"{address} was already erased; nothing changed."]
    else:
        lines = [f"{address} is erased. Only a keyed hash stays, so the address is never "
                 "mailed or imported again.",
                 f"Messages redacted: {done.messages_redacted}. Mailing tools that keep "
                 "contacts delete them at the next sync."]
    return _message(staff, "Person erased", lines, section="contacts", links=back)


# users and tokens ------------------------------------------------------------------------------
async def _users(runtime: Runtime, staff: StaffSession, *, status: int = 200,
                 notice: str | None = None, error: str | None = None) -> Html:
    return _page("users.html", staff=staff, title="Users and API tokens", section="users",
                 status=status, notice=notice, error=error, roles=ROLES,
                 users=await runtime.store.staff_users(),
                 tokens=await runtime.store.api_tokens())


@get("/staff/users", include_in_schema=False)
async def users_page(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                     sessions: NamedDependency[Sessions]) -> Html:
    staff = await _staff(request, runtime, sessions, "admin")
    notice = None
    added, disabled = request.query_params.get("added"), request.query_params.get("disabled")
    revoked = _int_query(request, "revoked")
    # Only facts the store confirms are shown: the URL cannot put words on the page.
    if isinstance(added, str) and (user := await runtime.store.staff_user(added)):
        notice = f"User {user.name} added ({user.role})."
    elif isinstance(disabled, str) and (user := await runtime.store.staff_user(disabled)) \
            and user.disabled_at:
        notice = f"User {user.name} disabled."
    elif revoked is not None and any(t.id == revoked and t.revoked_at
                                     for t in await runtime.store.api_tokens()):
        notice = f"Token #{revoked} revoked."
    return await _users(runtime, staff, notice=notice)


@post("/staff/users", status_code=200, include_in_schema=False)
async def users_add(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                    sessions: NamedDependency[Sessions]) -> Response[Any]:
    staff, form = await _post(request, runtime, sessions, "admin")
    name = _field(form, "name")
    value = form.get("password")
    password = value if isinstance(value, str) else ""
    try:
        await actions.add_user(runtime, name, _field(form, "role"), password, staff.actor)
    except ActionError as exc:
        return await _users(runtime, staff, status=422, error=str(exc))
    return _redirect(f"/staff/users?added={quote(name)}")


@post("/staff/users/{name:str}/disable", status_code=200, include_in_schema=False)
async def users_disable(name: FromPath[str], request: Request[Any, Any, Any],
                        runtime: NamedDependency[Runtime],
                        sessions: NamedDependency[Sessions]) -> Response[Any]:
    staff, _ = await _post(request, runtime, sessions, "admin")
    if name == staff.name:
        return await _users(runtime, staff, status=422,
                            error="You cannot disable yourself: ask another admin.")
    try:
        await actions.disable_user(runtime, name, staff.actor)
    except ActionError as exc:
        return await _users(runtime, staff, status=422, error=str(exc))
    return _redirect(f"/staff/users?disabled={quote(name)}")


@post("/staff/tokens", status_code=200, include_in_schema=False)
async def tokens_create(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                        sessions: NamedDependency[Sessions]) -> Html:
    staff, form = await _post(request, runtime, sessions, "admin")
    role = _field(form, "role")
    name = _field(form, "name")
    if len(name) > MAX_TOKEN_NAME or not name.isprintable():
        return await _users(runtime, staff, status=422,
                            error=f"A token name is at most {MAX_TOKEN_NAME} characters, "
                                  "without line breaks or control characters.")
    try:
        token_id, token = await actions.create_token(runtime, name, role, staff.actor)
    except ActionError as exc:
        return await _users(runtime, staff, status=422, error=str(exc))
    return _message(staff, f"API token #{token_id} created", [
        f"Role: {role}. Copy the token now: it is shown only this once and stored only "
        "as a digest.",
        "Use it as 'Authorization: Bearer TOKEN'.",
    ], section="users", secret=token, links=[("/staff/users", "Back to users and tokens")])


@post("/staff/tokens/{token_id:int}/revoke", status_code=200, include_in_schema=False)
async def tokens_revoke(token_id: FromPath[int], request: Request[Any, Any, Any],
                        runtime: NamedDependency[Runtime],
                        sessions: NamedDependency[Sessions]) -> Response[Any]:
    staff, _ = await _post(request, runtime, sessions, "admin")
    try:
        await actions.revoke_token(runtime, token_id, staff.actor)
    except ActionError as exc:
        return await _users(runtime, staff, status=422, error=str(exc))
    return _redirect(f"/staff/users?revoked={token_id}")


# sync --------------------------------------------------------------------------------------------
@get("/staff/sync", include_in_schema=False)
async def sync_page(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
                    sessions: NamedDependency[Sessions]) -> Html:
    staff = await _staff(request, runtime, sessions, "marketing")
    return _page("sync.html", staff=staff, title="Sync status", section="sync",
                 connectors=sorted((await sync_status(runtime)).items()))


STAFF_ROUTES: list[Any] = [
    Router(
        path="/",
        route_handlers=[
            login_page, login_post, logout, dashboard, queue_page, item_page, item_decide,
            contacts_page, contacts_search, rights_export, rights_rectify, rights_forget,
            users_page, users_add, users_disable, tokens_create, tokens_revoke, sync_page,
        ],
        # Refusals on console pages are pages too; status and wording come from the one
        # error mapper (service.errors.classify). LoginRequired still goes to the app's
        # handler, which redirects to /staff/login.
        exception_handlers={
            RoleRequired: _error_page,
            PermissionDeniedException: _error_page,
            ActionError: _error_page,
            UnknownPerson: _error_page,
        },
        include_in_schema=False,
    ),
]
