"""A local Brevo (ex-Sendinblue) API v3: contacts, lists, blocked transactional contacts.

Endpoints (under ``/v3``; key in the ``api-key`` header, else 401
``{"code": "unauthorized", "message": "Key not found"}``; errors are
``{"code", "message"}``):

- ``POST /contacts/import``: ``jsonBody`` (10 MB at most) and ``listIds`` or ``newList``
  are mandatory (400 ``missing_parameter``); 202 ``{"processId"}``. The work is done in
  the background, as at Brevo: the process is ``queued``, then ``in_process``, and only
  when it is ``completed`` are contacts created or updated (unless
  ``updateExistingContacts`` is false), blocklisted when ``emailBlacklist`` is true and
  added to the lists. Invalid addresses are refused and listed in the import report.
- ``GET /processes/{processId}`` (https://developers.brevo.com/reference/get-process):
  ``{"id", "name": "IMPORTUSER", "status"}``; a completed import adds ``info.import``
  whose ``invalid_emails`` is the URL of a CSV file of the refused rows (null when none;
  the other report fields are null). 404 ``document_not_found`` for an unknown process.
  Here a process completes at the poll after ``process_polls`` unfinished answers (0:
  at the first poll), and never while ``stall_imports`` is set.
- ``GET /reports/{token}.csv``: a report file (a pre-signed download: no API key).
- ``POST /contacts``: 201 ``{"id"}`` for a new contact; with ``updateEnabled`` an
  existing one is updated (204), else 400 ``duplicate_parameter``.
- ``PUT /contacts/{identifier}`` (``emailBlacklisted``, ``listIds``, ``unlinkListIds``)
  and ``DELETE /contacts/{identifier}``, with an optional ``identifierType``
  (``email_id``, ``contact_id``): 204; 404 ``document_not_found`` "Contact does not
  exist"; 400 ``invalid_parameter`` for an identifier that is not a valid address.
- ``POST /contacts/lists/{listId}/contacts/remove`` and ``.../add``: ``emails`` (at most
  150) or ``ids``: 201 ``{"contacts": {"success", "failure"}}``; 400 ``invalid_parameter``
  "Contact already removed from list and/or does not exist" (resp. "already in list")
  when nobody moved; 404 for an unknown list.
- ``GET /contacts``: ``limit`` (default 50, at most 1000), ``offset``, ``sort``
  (asc/desc by creation, default desc), ``modifiedSince`` (modified after, UTC).
- ``GET /smtp/blockedContacts``: ``startDate``/``endDate`` (YYYY-MM-DD, both or none,
  not in the future), ``limit`` (default 50, at most 100), ``offset``, ``senders``,
  ``sort`` (default desc).

Contact endpoints allow 10 requests a second; this emulator allows 10 in flight. Its 429
carries ``x-sib-ratelimit-limit``, ``x-sib-ratelimit-remaining`` and
``x-sib-ratelimit-reset`` (seconds).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from tests.emulators.base import Emulator, Faults, Request, Response

P = "/v3"
MAX_LIST_EMAILS = 150
MAX_CONTACTS_PAGE = 1000
MAX_BLOCKED_PAGE = 100
MAX_IMPORT_BYTES = 10 * 1024 * 1024
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)
_IDENTIFIER_TYPES = ("email_id", "contact_id", "ext_id", "phone_id", "whatsapp_id",
                     "landline_number_id")
_BLOCK_REASONS = {
    "unsubscribedViaEmail": "Contact unsubscribed via email",
    "unsubscribedViaApi": "Contact unsubscribed via API",
    "unsubscribedViaMA": "Contact unsubscribed via Marketing Automation",
    "adminBlocked": "Admin blocked",
    "hardBounce": "Hard bounce",
    "contactFlaggedAsSpam": "Contact flagged email as spam",
}
_VIEW_LABEL = {"hardBounce": "bounce", "contactFlaggedAsSpam": "complaint"}


def error(status: int, code: str, message: str) -> Response:
    return Response(status, {"code": code, "message": message})


def brevo_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def valid_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 254 and bool(_EMAIL.fullmatch(value))


@dataclass
class Process:
    """A background import: what it will do, and how far it is."""

    id: int
    rows: list[dict[str, Any]]
    list_ids: list[int]
    blacklist: bool
    update: bool
    polls: int = 0
    status: str = "queued"
    invalid: list[str] = field(default_factory=list)
    report: str | None = None
    """The token of its invalid_emails report, once completed with refused rows."""


@dataclass
class Contact:
    id: int
    email: str
    created_at: datetime
    modified_at: datetime
    email_blacklisted: bool = False
    list_ids: set[int] = field(default_factory=set)
    list_unsubscribed: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)
    """Lists the contact was taken out of through the API (the emulator's bookkeeping for
    view(); Brevo only shows that the contact is not in the list)."""

    def api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "email": self.email,
            "id": self.id,
            "emailBlacklisted": self.email_blacklisted,
            "smsBlacklisted": False,
            "createdAt": brevo_time(self.created_at),
            "modifiedAt": brevo_time(self.modified_at),
            "listIds": sorted(self.list_ids),
            "attributes": {},
        }
        if self.list_unsubscribed:
            out["listUnsubscribed"] = sorted(self.list_unsubscribed)
        return out


class BrevoEmulator(Emulator):
    name = "brevo"
    max_in_flight = 10
    """Brevo allows 10 requests a second on contact endpoints (general plan)."""

    def __init__(
        self,
        api_key: str,
        *,
        lists: Iterable[int] = (),
        sender: str = "news@brand.example",
        faults: Faults | None = None,
    ) -> None:
        super().__init__(faults)
        self.api_key = api_key
        self.sender = sender
        self.lists: set[int] = set(lists)
        self.contacts: dict[str, Contact] = {}
        """Lower-cased address -> contact."""
        self.blocked: list[dict[str, Any]] = []
        """Blocked transactional contacts, oldest first."""
        self.deleted: set[str] = set()
        self.processes = 0
        self.jobs: dict[int, Process] = {}
        """Background imports by process id."""
        self.reports: dict[str, str] = {}
        """Report token -> CSV text."""
        self.process_polls = 0
        """Unfinished answers a process gives before it completes (0: at the first poll)."""
        self.stall_imports = False
        """While set, no import process completes (a Brevo backlog)."""
        self.refuse: set[str] = set()
        """Lower-cased addresses the background import refuses although they look valid
        (Brevo's own checks go further than syntax)."""
        self._next_id = 1
        self._last_ms = 0
        self._mutex = threading.RLock()
        """The test thread (tool_opt_out, view) and the server thread share the state."""
        self.route("POST", P + r"/contacts/import", "import_contacts", self.import_contacts)
        self.route("POST", P + r"/contacts", "create_contact", self.create_contact)
        self.route("GET", P + r"/contacts", "get_contacts", self.get_contacts)
        self.route("PUT", P + r"/contacts/(?P<identifier>[^/]+)", "update_contact",
                   self.update_contact)
        self.route("DELETE", P + r"/contacts/(?P<identifier>[^/]+)", "delete_contact",
                   self.delete_contact)
        self.route("POST", P + r"/contacts/lists/(?P<list_id>[^/]+)/contacts/remove",
                   "remove_from_list", self.remove_from_list)
        self.route("POST", P + r"/contacts/lists/(?P<list_id>[^/]+)/contacts/add",
                   "add_to_list", self.add_to_list)
        self.route("GET", P + r"/smtp/blockedContacts", "blocked_contacts",
                   self.blocked_contacts)
        self.route("GET", P + r"/processes/(?P<process_id>[^/]+)", "get_process",
                   self.get_process)
        self.route("GET", r"/reports/(?P<token>[A-Za-z0-9_-]+)\.csv", "report", self.report)

    # the tool's answers ---------------------------------------------------------------
    def authorised(self, request: Request) -> bool:
        if request.path.startswith("/reports/"):
            return True  # a pre-signed download URL: the token in it is the key
        return request.headers.get("api-key") == self.api_key

    def unauthorised(self) -> Response:
        return error(401, "unauthorized", "Key not found")

    def rate_limited(self, retry_after_s: float) -> Response:
        return Response(429, {"code": "too_many_requests",
                              "message": "The expected rate limit is exceeded."},
                        {"x-sib-ratelimit-limit": "10", "x-sib-ratelimit-remaining": "0",
                         "x-sib-ratelimit-reset": f"{retry_after_s:g}"})

    def server_error(self) -> Response:
        return error(500, "internal_error", "Internal server error")

    def not_found(self) -> Response:
        return error(404, "document_not_found", "Not found")

    # state ------------------------------------------------------------------------
    def _now(self) -> datetime:
        """Now, to the millisecond (never earlier than a time already handed out; two
        changes in the same millisecond share it, as they can at Brevo)."""
        ms = max(int(time.time() * 1000), self._last_ms)
        self._last_ms = ms
        return datetime.fromtimestamp(ms / 1000, UTC)

    def _upsert(self, email: str, now: datetime) -> Contact:
        key = email.lower()
        contact = self.contacts.get(key)
        if contact is None:
            contact = Contact(self._next_id, key, now, now)
            self._next_id += 1
            self.contacts[key] = contact
            self.deleted.discard(key)
        contact.modified_at = now
        return contact

    def add_contact(self, email: str, *, lists: Iterable[int] = (),
                    blacklisted: bool = False, at: datetime | None = None) -> None:
        """Test set-up: a contact as the account already has it."""
        with self._mutex:
            now = at or self._now()
            contact = self._upsert(email, now)
            contact.list_ids.update(lists)
            contact.email_blacklisted = blacklisted or contact.email_blacklisted

    def block_transactional(self, email: str, code: str, *, at: datetime | None = None
                            ) -> None:
        """A blocked transactional contact, as Brevo records one (``reason.code``)."""
        with self._mutex:
            self.blocked.append({
                "email": email.lower(),
                "senderEmail": self.sender,
                "reason": {"code": code, "message": _BLOCK_REASONS[code]},
                "blockedAt": brevo_time(at or self._now()),
            })

    def tool_opt_out(self, address: str, kind: str, topic: str | None = None) -> None:
        if kind == "complaint":
            self.block_transactional(address, "contactFlaggedAsSpam")
            return
        if kind == "bounce":
            self.block_transactional(address, "hardBounce")
            return
        if kind != "unsubscribe":
            raise ValueError(f"unknown opt-out kind {kind!r}")
        with self._mutex:
            contact = self._upsert(address, self._now())
            if topic is None:
                contact.email_blacklisted = True  # the campaign's unsubscribe link
            else:
                list_id = int(topic)
                contact.list_ids.discard(list_id)
                contact.list_unsubscribed.add(list_id)

    def state(self) -> Any:
        with self._mutex:
            return {
                "contacts": [c.api() for c in sorted(self.contacts.values(),
                                                     key=lambda c: c.id)],
                "lists": {str(n): sorted(c.email for c in self.contacts.values()
                                         if n in c.list_ids) for n in sorted(self.lists)},
                "blockedContacts": [dict(b) for b in self.blocked],
                "deleted": sorted(self.deleted),
                "processes": self.processes,
            }

    def view(self) -> dict[str, set[str]]:
        with self._mutex:
            out: dict[str, set[str]] = {}
            for contact in self.contacts.values():
                labels = {f"topic:{n}" for n in contact.list_unsubscribed | contact.removed}
                if contact.email_blacklisted:
                    labels.add("global")
                if labels:
                    out[contact.email] = labels
            for entry in self.blocked:
                label = _VIEW_LABEL.get(entry["reason"]["code"], "global")
                out.setdefault(entry["email"], set()).add(label)
            for email in self.deleted:
                out.setdefault(email, set()).add("deleted")
            return out

    # helpers ----------------------------------------------------------------------
    @staticmethod
    def _body(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            body = request.json()
        except ValueError:
            return None, error(400, "bad_request", "Input must be a valid JSON object")
        if not isinstance(body, dict):
            return None, error(400, "invalid_parameter", "Input must be a JSON object")
        return body, None

    def _find(self, request: Request) -> tuple[Contact | None, Response | None]:
        """The contact a path names (None and an error answer, or None and no answer
        for a valid identifier nobody has)."""
        identifier = request.params["identifier"]
        kind = request.arg("identifierType")
        if kind is not None and kind not in _IDENTIFIER_TYPES:
            return None, error(400, "invalid_parameter", "Invalid identifierType")
        if kind == "contact_id" or (kind is None and identifier.isdigit()):
            found = [c for c in self.contacts.values() if str(c.id) == identifier]
            return (found[0] if found else None), None
        if kind not in (None, "email_id"):
            return None, None  # no SMS, WhatsApp or ext_id contacts here
        if not valid_email(identifier):
            return None, error(400, "invalid_parameter", "Invalid email address")
        return self.contacts.get(identifier.lower()), None

    def _list_ids(self, value: Any) -> tuple[list[int], Response | None]:
        if value is None:
            return [], None
        if not isinstance(value, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in value):
            return [], error(400, "invalid_parameter", "listIds must be a list of integers")
        unknown = [x for x in value if x not in self.lists]
        if unknown:
            return [], error(404, "document_not_found", "List ID does not exist")
        return list(value), None

    # endpoints --------------------------------------------------------------------
    async def import_contacts(self, request: Request) -> Response:
        body, problem = self._body(request)
        if body is None:
            return problem or error(400, "bad_request", "bad request")
        given = [k for k in ("fileUrl", "fileBody", "jsonBody") if body.get(k) is not None]
        if not given:
            return error(400, "missing_parameter",
                         "fileUrl, fileBody or jsonBody is mandatory")
        if given != ["jsonBody"]:
            return error(400, "invalid_parameter", "this emulator imports jsonBody only")
        rows = body["jsonBody"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return error(400, "invalid_parameter", "jsonBody must be a list of objects")
        if len(json.dumps(rows)) > MAX_IMPORT_BYTES:
            return error(400, "invalid_parameter", "Maximum allowed json body size is 10MB")
        new_list = body.get("newList")
        if not body.get("listIds") and not new_list:
            return error(400, "missing_parameter", "listIds or newList is mandatory")
        async with self.lock:
            with self._mutex:
                list_ids, problem = self._list_ids(body.get("listIds"))
                if problem is not None:
                    return problem
                if new_list:
                    if not isinstance(new_list, dict) or not new_list.get("listName"):
                        return error(400, "invalid_parameter", "newList needs a listName")
                    list_ids.append(max(self.lists, default=0) + 1)
                    self.lists.add(list_ids[-1])
                self.processes += 1
                self.jobs[self.processes] = Process(
                    self.processes, [dict(r) for r in rows], list_ids,
                    body.get("emailBlacklist") is True,
                    body.get("updateExistingContacts", True) is not False)
                return Response(202, {"processId": self.processes})

    def _run_import(self, job: Process) -> None:
        """What the background import does once it runs (under the mutex)."""
        for row in job.rows:
            email = row.get("email") or (row.get("attributes") or {}).get("EMAIL")
            if not isinstance(email, str) or not valid_email(email) \
                    or email.lower() in self.refuse:
                job.invalid.append(str(email or ""))  # in the report; nothing else
                continue
            if not job.update and email.lower() in self.contacts:
                continue
            contact = self._upsert(email, self._now())
            contact.list_ids.update(job.list_ids)
            for n in job.list_ids:
                contact.list_unsubscribed.discard(n)
                contact.removed.discard(n)
            if job.blacklist:
                contact.email_blacklisted = True
        job.status = "completed"
        if job.invalid:
            token = secrets.token_urlsafe(12)
            self.reports[token] = "EMAIL\n" + "".join(f"{e}\n" for e in job.invalid)
            job.report = token

    async def get_process(self, request: Request) -> Response:
        try:
            process_id = int(request.params["process_id"])
        except ValueError:
            return error(400, "invalid_parameter", "processId must be a number")
        async with self.lock:
            with self._mutex:
                job = self.jobs.get(process_id)
                if job is None:
                    return error(404, "document_not_found", "Process does not exist")
                if job.status != "completed":
                    job.polls += 1
                    if not self.stall_imports and job.polls > self.process_polls:
                        self._run_import(job)
                    elif job.polls > 1:
                        job.status = "in_process"
                answer: dict[str, Any] = {"id": job.id, "name": "IMPORTUSER",
                                          "status": job.status}
                if job.status == "completed":
                    host = request.headers.get("host", "localhost")
                    answer["info"] = {"import": {
                        "invalid_emails": f"http://{host}/reports/{job.report}.csv"
                        if job.report else None,
                        "duplicate_contact_id": None, "duplicate_ext_id": None,
                        "duplicate_email_id": None, "duplicate_phone_id": None,
                        "duplicate_whatsapp_id": None, "duplicate_landline_number_id": None,
                    }}
                return Response(200, answer)

    async def report(self, request: Request) -> Response:
        with self._mutex:
            text = self.reports.get(request.params["token"])
        if text is None:
            return error(404, "document_not_found", "Not found")
        return Response(200, text.encode("utf-8"), content_type="text/csv")

    async def create_contact(self, request: Request) -> Response:
        body, problem = self._body(request)
        if body is None:
            return problem or error(400, "bad_request", "bad request")
        email = body.get("email")
        if email is None:
            return error(400, "missing_parameter", "email is missing")
        if not valid_email(email):
            return error(400, "invalid_parameter", "Invalid email address")
        blacklisted = body.get("emailBlacklisted")
        if blacklisted is not None and not isinstance(blacklisted, bool):
            return error(400, "invalid_parameter", "emailBlacklisted must be a boolean")
        async with self.lock:
            with self._mutex:
                list_ids, problem = self._list_ids(body.get("listIds"))
                if problem is not None:
                    return problem
                existing = self.contacts.get(email.lower())
                if existing is not None and body.get("updateEnabled") is not True:
                    return error(400, "duplicate_parameter", "Contact already exist")
                contact = self._upsert(email, self._now())
                contact.list_ids.update(list_ids)
                if blacklisted is not None:
                    contact.email_blacklisted = blacklisted
                if existing is not None:
                    return Response(204)
                return Response(201, {"id": contact.id})

    async def update_contact(self, request: Request) -> Response:
        body, problem = self._body(request)
        if body is None:
            return problem or error(400, "bad_request", "bad request")
        blacklisted = body.get("emailBlacklisted")
        if blacklisted is not None and not isinstance(blacklisted, bool):
            return error(400, "invalid_parameter", "emailBlacklisted must be a boolean")
        async with self.lock:
            with self._mutex:
                contact, problem = self._find(request)
                if problem is not None:
                    return problem
                if contact is None:
                    return error(404, "document_not_found", "Contact does not exist")
                add, problem = self._list_ids(body.get("listIds"))
                if problem is not None:
                    return problem
                unlink, problem = self._list_ids(body.get("unlinkListIds"))
                if problem is not None:
                    return problem
                contact.modified_at = self._now()
                if blacklisted is not None:
                    contact.email_blacklisted = blacklisted
                contact.list_ids.update(add)
                contact.list_ids.difference_update(unlink)
                return Response(204)

    async def delete_contact(self, request: Request) -> Response:
        async with self.lock:
            with self._mutex:
                contact, problem = self._find(request)
                if problem is not None:
                    return problem
                if contact is None:
                    return error(404, "document_not_found", "Contact does not exist")
                del self.contacts[contact.email]
                self.deleted.add(contact.email)
                return Response(204)

    async def _move(self, request: Request, *, remove: bool) -> Response:
        try:
            list_id = int(request.params["list_id"])
        except ValueError:
            return error(400, "invalid_parameter", "listId must be a number")
        body, problem = self._body(request)
        if body is None:
            return problem or error(400, "bad_request", "bad request")
        emails, ids = body.get("emails"), body.get("ids")
        if emails is None and ids is None and not (remove and body.get("all") is True):
            return error(400, "missing_parameter", "emails or ids is mandatory")
        wanted = emails if emails is not None else ids
        if wanted is not None and (not isinstance(wanted, list) or not wanted):
            return error(400, "invalid_parameter", "emails must be a non-empty list")
        if wanted is not None and len(wanted) > MAX_LIST_EMAILS:
            return error(400, "invalid_parameter",
                         f"You can pass a maximum of {MAX_LIST_EMAILS} emails in one request")
        async with self.lock:
            with self._mutex:
                if list_id not in self.lists:
                    return error(404, "document_not_found", "List ID does not exist")
                if wanted is None:  # "all": a process empties the list
                    for contact in self.contacts.values():
                        contact.list_ids.discard(list_id)
                    self.processes += 1
                    return Response(201, {"contacts": {"processId": self.processes}})
                by_id = {str(c.id): c for c in self.contacts.values()}
                success: list[Any] = []
                failure: list[Any] = []
                for value in wanted:
                    contact = by_id.get(str(value)) if ids is not None and emails is None \
                        else self.contacts.get(str(value).lower())
                    moved = contact is not None and (list_id in contact.list_ids) == remove
                    (success if moved else failure).append(value)
                    if contact is None or not moved:
                        continue
                    contact.modified_at = self._now()
                    if remove:
                        contact.list_ids.discard(list_id)
                        contact.removed.add(list_id)
                    else:
                        contact.list_ids.add(list_id)
                        contact.removed.discard(list_id)
                        contact.list_unsubscribed.discard(list_id)
                if not success:
                    what = "removed from" if remove else "in"
                    return error(400, "invalid_parameter",
                                 f"Contact already {what} list and/or does not exist")
                return Response(201, {"contacts": {"success": success, "failure": failure}})

    async def remove_from_list(self, request: Request) -> Response:
        return await self._move(request, remove=True)

    async def add_to_list(self, request: Request) -> Response:
        return await self._move(request, remove=False)

    @staticmethod
    def _paging(request: Request, maximum: int) -> tuple[int, int, bool, Response | None]:
        try:
            limit = int(request.arg("limit", "50") or "50")
            offset = int(request.arg("offset", "0") or "0")
        except ValueError:
            return 0, 0, False, error(400, "invalid_parameter", "limit and offset are numbers")
        if limit < 0 or offset < 0:
            return 0, 0, False, error(400, "invalid_parameter", "limit and offset are >= 0")
        if limit > maximum:
            return 0, 0, False, error(400, "out_of_range",
                                      f"Limit exceeds max value {maximum}")
        sort = request.arg("sort", "desc")
        if sort not in ("asc", "desc"):
            return 0, 0, False, error(400, "invalid_parameter", "sort must be asc or desc")
        return limit, offset, sort == "desc", None

    async def get_contacts(self, request: Request) -> Response:
        limit, offset, descending, problem = self._paging(request, MAX_CONTACTS_PAGE)
        if problem is not None:
            return problem
        since: datetime | None = None
        value = request.arg("modifiedSince")
        if value:
            try:
                since = datetime.fromisoformat(value)
            except ValueError:
                return error(400, "invalid_parameter", "Invalid modifiedSince date-time")
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
        with self._mutex:
            found = sorted(self.contacts.values(), key=lambda c: c.id, reverse=descending)
            if since is not None:
                found = [c for c in found if c.modified_at > since]
            page = [c.api() for c in found[offset:offset + limit]]
        return Response(200, {"contacts": page, "count": len(found)})

    async def blocked_contacts(self, request: Request) -> Response:
        limit, offset, descending, problem = self._paging(request, MAX_BLOCKED_PAGE)
        if problem is not None:
            return problem
        start, end = request.arg("startDate"), request.arg("endDate")
        if bool(start) != bool(end):
            return error(400, "missing_parameter",
                         "startDate and endDate must be passed together")
        window: tuple[date, date] | None = None
        if start and end:
            try:
                window = (date.fromisoformat(start), date.fromisoformat(end))
            except ValueError:
                return error(400, "invalid_parameter", "Dates must be YYYY-MM-DD")
            today = datetime.now(UTC).date()
            if window[0] > today or window[1] > today:
                return error(400, "invalid_parameter", "Dates cannot be in the future")
            if window[0] > window[1]:
                return error(400, "invalid_parameter", "startDate is after endDate")
        senders = {s.strip().lower() for s in (request.arg("senders") or "").split(",")
                   if s.strip()}
        with self._mutex:
            found = [dict(b) for b in self.blocked]
        if window is not None:
            found = [b for b in found
                     if window[0] <= date.fromisoformat(b["blockedAt"][:10]) <= window[1]]
        if senders:
            found = [b for b in found if b["senderEmail"] in senders]
        if descending:
            found.reverse()
        return Response(200, {"contacts": found[offset:offset + limit], "count": len(found)})
