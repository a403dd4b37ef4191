"""A faithful local SendGrid (Twilio) v3 API: suppressions, suppression lists, contacts.

Modelled on the v3 API reference (``twilio/sendgrid-oai``, suppressions and Marketing
Campaigns contacts):

- auth: ``Authorization: Bearer KEY``; otherwise 401
  ``{"errors": [{"field": null, "message": "authorization required"}]}``;
- every answer carries ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (epoch
  seconds) for its endpoint; past the limit, 429 with
  ``{"errors": [{"field": null, "message": "too many requests"}]}``;
- ``POST /v3/asm/suppressions/global`` and ``POST /v3/asm/groups/{id}/suppressions``
  ``{"recipient_emails": [...]}`` -> 201 echoing the list; adding an address again
  changes nothing; a group that does not exist sends the addresses to the global list
  (as the reference says). No maximum is documented, so none is enforced;
- ``DELETE .../global/{email}`` and ``DELETE /v3/asm/groups/{id}/suppressions/{email}``
  -> 204 (also when the address was not there);
- ``GET /v3/suppression/unsubscribes|bounces|spam_reports``: ``start_time`` /
  ``end_time`` (inclusive unix seconds), ``limit`` 1..500, ``offset``; newest first;
- ``GET /v3/asm/suppressions`` (every group's suppressions with ``created_at``) and
  ``GET /v3/asm/groups/{id}/suppressions`` (a plain list of addresses);
- ``POST /v3/marketing/contacts/search/emails`` (up to 100 addresses; 200 with
  ``contact`` or ``error`` per address, 404 when none matches, 400 for an invalid
  address) and ``DELETE /v3/marketing/contacts?ids=...`` (202 with a ``job_id``;
  the emulator deletes at once, SendGrid in a job).

Where the reference shows no error body (an invalid address in ``recipient_emails``,
``limit`` out of range, too many search addresses), the emulator answers 400 in
SendGrid's error shape with the offending ``field`` and its own wording. SendGrid
documents no concurrency limit; :attr:`SendgridEmulator.max_in_flight` is a generous
10 answered like a rate limit.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tests.emulators.base import Emulator, Faults, Request, Response, now_epoch

Handler = Callable[[Request], Awaitable[Response]]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_PAGE = 500
MAX_SEARCH = 100


def _error(status: int, message: str, field: str | None = None) -> Response:
    return Response(status, {"errors": [{"field": field, "message": message}]})


class SendgridEmulator(Emulator):
    name = "sendgrid"
    max_in_flight = 10

    def __init__(
        self,
        api_key: str,
        groups: Iterable[str] = (),
        faults: Faults | None = None,
        *,
        rate_limit: int = 600,
        rate_window_s: int = 60,
    ) -> None:
        super().__init__(faults)
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.rate_window_s = rate_window_s
        self._windows: dict[str, tuple[int, int]] = {}
        """endpoint -> (window start, requests in it)."""
        self.global_unsubscribes: dict[str, int] = {}
        """lower-cased address -> created (epoch seconds)."""
        self.groups: dict[str, dict[str, int]] = {str(g): {} for g in groups}
        """group id -> {address: created}."""
        self.bounces: dict[str, dict[str, Any]] = {}
        self.spam_reports: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, str] = {}
        """address -> contact id (Marketing Campaigns)."""
        self.deleted_contacts: set[str] = set()
        self.jobs: list[str] = []

        r = self._endpoint
        r("POST", r"/v3/asm/suppressions/global", "global.add", self._global_add)
        r("GET", r"/v3/asm/suppressions/global/(?P<email>[^/]+)", "global.get",
          self._global_get)
        r("DELETE", r"/v3/asm/suppressions/global/(?P<email>[^/]+)", "global.delete",
          self._global_delete)
        r("POST", r"/v3/asm/groups/(?P<group>[^/]+)/suppressions", "group.add",
          self._group_add)
        r("GET", r"/v3/asm/groups/(?P<group>[^/]+)/suppressions", "group.list",
          self._group_list)
        r("DELETE", r"/v3/asm/groups/(?P<group>[^/]+)/suppressions/(?P<email>[^/]+)",
          "group.delete", self._group_delete)
        r("GET", r"/v3/asm/suppressions", "suppressions.all", self._all_group_suppressions)
        for name in ("unsubscribes", "bounces", "spam_reports"):
            r("GET", rf"/v3/suppression/{name}", f"list.{name}", self._lister(name))
        r("POST", r"/v3/marketing/contacts/search/emails", "contacts.search", self._search)
        r("DELETE", r"/v3/marketing/contacts", "contacts.delete", self._delete_contacts)

    # what the toolkit asks -------------------------------------------------
    def authorised(self, request: Request) -> bool:
        return request.bearer() == self.api_key

    def unauthorised(self) -> Response:
        return _error(401, "authorization required")

    def rate_limited(self, retry_after_s: float) -> Response:
        reset = math.ceil(time.time() + retry_after_s)
        return self._too_many(reset)

    def server_error(self) -> Response:
        return _error(500, "internal server error")

    def not_found(self) -> Response:
        return _error(404, "resource not found")

    def state(self) -> dict[str, Any]:
        return {
            "global_unsubscribes": [{"email": e, "created": c}
                                    for e, c in sorted(self.global_unsubscribes.items())],
            "groups": {g: sorted(members) for g, members in sorted(self.groups.items())},
            "bounces": sorted(self.bounces.values(), key=lambda b: b["email"]),
            "spam_reports": sorted(self.spam_reports.values(), key=lambda s: s["email"]),
            "contacts": dict(sorted(self.contacts.items())),
            "deleted_contacts": sorted(self.deleted_contacts),
        }

    def view(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for address in self.global_unsubscribes:
            out.setdefault(address, set()).add("global")
        for group, members in self.groups.items():
            for address in members:
                out.setdefault(address, set()).add(f"topic:{group}")
        for address, bounce in self.bounces.items():
            if str(bounce.get("status", "")).startswith("5"):
                out.setdefault(address, set()).add("bounce")
        for address in self.spam_reports:
            out.setdefault(address, set()).add("complaint")
        for address in self.deleted_contacts:
            out.setdefault(address, set()).add("deleted")
        return out

    def tool_opt_out(self, address: str, kind: str, topic: str | None = None) -> None:
        email, now = address.lower(), now_epoch()
        if kind == "unsubscribe" and topic is None:
            self.global_unsubscribes.setdefault(email, now)
        elif kind == "unsubscribe":
            self.groups.setdefault(str(topic), {}).setdefault(email, now)
        elif kind == "complaint":
            self.spam_reports[email] = {"created": now, "email": email, "ip": "10.63.202.100"}
        elif kind == "bounce":
            self.bounces[email] = {
                "created": now, "email": email, "status": "5.1.1",
                "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            }
        else:
            raise ValueError(f"unknown opt-out kind {kind!r}")

    # test helpers ----------------------------------------------------------
    def soft_bounce(self, address: str) -> None:
        """A temporary failure on the bounce list (4.x.x): not an opt-out."""
        email = address.lower()
        self.bounces[email] = {"created": now_epoch(), "email": email, "status": "4.2.2",
                               "reason": "452 4.2.2 Mailbox full"}

    def add_contact(self, address: str) -> str:
        email = address.lower()
        self.deleted_contacts.discard(email)
        return self.contacts.setdefault(email, str(uuid.uuid4()))

    # rate limit ------------------------------------------------------------
    def _endpoint(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        async def limited(request: Request) -> Response:
            window = int(time.time()) // self.rate_window_s * self.rate_window_s
            start, used = self._windows.get(name, (window, 0))
            if start != window:
                start, used = window, 0
            used += 1
            self._windows[name] = (start, used)
            reset = start + self.rate_window_s
            if used > self.rate_limit:
                return self._too_many(reset)
            response = await handler(request)
            response.headers.update({
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(self.rate_limit - used),
                "X-RateLimit-Reset": str(reset),
            })
            return response

        self.route(method, pattern, name, limited)

    def _too_many(self, reset: int) -> Response:
        response = _error(429, "too many requests")
        response.headers.update({"X-RateLimit-Limit": str(self.rate_limit),
                                 "X-RateLimit-Remaining": "0",
                                 "X-RateLimit-Reset": str(reset)})
        return response

    # suppressions ----------------------------------------------------------
    def _recipients(self, request: Request) -> list[str] | Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "json could not be unmarshalled")
        if not isinstance(body, dict):
            return _error(400, "json could not be unmarshalled")
        emails = body.get("recipient_emails")
        if not isinstance(emails, list) or not emails:
            return _error(400, "recipient_emails is required", "recipient_emails")
        if not all(isinstance(e, str) and _EMAIL.fullmatch(e) for e in emails):
            return _error(400, "email address is invalid", "recipient_emails")
        return [str(e) for e in emails]

    async def _global_add(self, request: Request) -> Response:
        emails = self._recipients(request)
        if isinstance(emails, Response):
            return emails
        async with self.lock:
            now = now_epoch()
            for email in emails:
                self.global_unsubscribes.setdefault(email.lower(), now)
        return Response(201, {"recipient_emails": emails})

    async def _global_get(self, request: Request) -> Response:
        email = request.params["email"].lower()
        if email in self.global_unsubscribes:
            return Response(200, {"recipient_email": email})
        return Response(200, {})

    async def _global_delete(self, request: Request) -> Response:
        async with self.lock:
            self.global_unsubscribes.pop(request.params["email"].lower(), None)
        return Response(204)

    async def _group_add(self, request: Request) -> Response:
        emails = self._recipients(request)
        if isinstance(emails, Response):
            return emails
        group = request.params["group"]
        async with self.lock:
            now = now_epoch()
            # A deleted or unknown group: the addresses go to the global list.
            target = self.groups.get(group, self.global_unsubscribes)
            for email in emails:
                target.setdefault(email.lower(), now)
        return Response(201, {"recipient_emails": emails})

    async def _group_list(self, request: Request) -> Response:
        return Response(200, sorted(self.groups.get(request.params["group"], {})))

    async def _group_delete(self, request: Request) -> Response:
        async with self.lock:
            self.groups.get(request.params["group"], {}).pop(
                request.params["email"].lower(), None)
        return Response(204)

    async def _all_group_suppressions(self, request: Request) -> Response:
        rows = [
            {"email": email, "group_id": int(group) if group.isdigit() else group,
             "group_name": f"Group {group}", "created_at": created}
            for group, members in sorted(self.groups.items())
            for email, created in sorted(members.items())
        ]
        return Response(200, rows)

    def _lister(self, name: str) -> Handler:
        async def handler(request: Request) -> Response:
            numbers: dict[str, int] = {}
            for param, default in (("start_time", 0), ("end_time", 2**62), ("limit", MAX_PAGE),
                                   ("offset", 0)):
                raw = request.arg(param)
                try:
                    numbers[param] = default if raw is None else int(raw)
                except ValueError:
                    return _error(400, f"{param} must be an integer", param)
            if not 1 <= numbers["limit"] <= MAX_PAGE:
                return _error(400, f"limit must be between 1 and {MAX_PAGE}", "limit")
            if numbers["offset"] < 0:
                return _error(400, "offset must not be negative", "offset")
            rows = self._rows(name)
            rows = [r for r in rows if numbers["start_time"] <= r["created"] <= numbers["end_time"]]
            rows.sort(key=lambda r: (-r["created"], r["email"]))
            start = numbers["offset"]
            return Response(200, rows[start:start + numbers["limit"]])

        return handler

    def _rows(self, name: str) -> list[dict[str, Any]]:
        if name == "unsubscribes":
            return [{"created": c, "email": e} for e, c in self.global_unsubscribes.items()]
        source = self.bounces if name == "bounces" else self.spam_reports
        return [dict(row) for row in source.values()]

    # contacts ----------------------------------------------------------------
    async def _search(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "json could not be unmarshalled")
        emails = body.get("emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not emails:
            return _error(400, "emails is required", "emails")
        if len(emails) > MAX_SEARCH:
            return _error(400, f"at most {MAX_SEARCH} emails can be searched", "emails")
        if not all(isinstance(e, str) and _EMAIL.fullmatch(e) for e in emails):
            return _error(400, "invalid email address", "emails")
        result: dict[str, Any] = {}
        for email in emails:
            lower = email.lower()
            contact_id = self.contacts.get(lower)
            if contact_id is None:
                result[lower] = {"error": "contact not found"}
            else:
                result[lower] = {"contact": {"id": contact_id, "email": lower,
                                             "alternate_emails": [], "list_ids": []}}
        if not any("contact" in entry for entry in result.values()):
            return _error(404, "no contacts found")
        return Response(200, {"result": result})

    async def _delete_contacts(self, request: Request) -> Response:
        ids = request.arg("ids")
        if request.arg("delete_all_contacts") == "true":
            wanted = set(self.contacts.values())
        elif ids:
            wanted = {part.strip() for part in ids.split(",") if part.strip()}
        else:
            return _error(400, "either ids or delete_all_contacts must be set", "ids")
        async with self.lock:
            for email, contact_id in list(self.contacts.items()):
                if contact_id in wanted:
                    del self.contacts[email]
                    self.deleted_contacts.add(email)
            job = str(uuid.uuid4())
            self.jobs.append(job)
        return Response(202, {"job_id": job})
