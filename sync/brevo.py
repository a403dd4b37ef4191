"""Brevo (ex-Sendinblue) API v3: contact blocklist, list membership, blocked transactional
contacts.

What the API offers (key in the ``api-key`` header; errors are ``{"code", "message"}``
with codes such as ``invalid_parameter``, ``missing_parameter``, ``document_not_found``,
``unauthorized``; a 429 carries ``x-sib-ratelimit-limit``, ``x-sib-ratelimit-remaining``
and ``x-sib-ratelimit-reset``, the seconds until the window resets):

- ``POST /contacts/import`` with ``{"jsonBody": [{"email"}...], "listIds": [id],
  "emailBlacklist": true, "updateExistingContacts": true, "emptyContactsAttributes":
  false}`` answers 202 ``{"processId"}`` and creates or updates the contacts in the
  background, blocklisted. ``listIds`` (or ``newList``) is mandatory; the JSON body may
  be 10 MB, 8 MB is the documented safe size
  (https://developers.brevo.com/reference/import-contacts).
- ``GET /processes/{processId}`` says how the background work went
  (https://developers.brevo.com/reference/get-process): ``{"id", "name", "status"}``
  with ``status`` ``queued``, ``in_process`` (``processing``), then ``completed`` (or
  ``failed``/``cancelled``); a completed import has ``info.import`` whose
  ``invalid_emails`` is the URL of a CSV file of the addresses Brevo refused (null when
  none; older SDKs describe it as a count). 404 for an unknown process.
- ``POST /contacts`` ``{"email", "emailBlacklisted", "updateEnabled": true}`` creates a
  contact (201) or updates an existing one (204).
- ``PUT /contacts/{identifier}?identifierType=email_id`` updates one contact (204;
  404 ``document_not_found`` when there is none); ``DELETE`` on the same path deletes it.
- ``POST /contacts/lists/{listId}/contacts/remove`` (and ``.../add``) with ``{"emails"}``,
  at most 150 per request, answers 201 ``{"contacts": {"success", "failure"}}``, or 400
  ``Contact already removed from list and/or does not exist`` when none could be moved.
- ``GET /contacts?modifiedSince=&limit=&offset=&sort=asc`` (at most 1000 a page, in the
  order of creation) lists contacts with ``emailBlacklisted``, ``modifiedAt``, ``listIds``
  and ``listUnsubscribed``.
- ``GET /smtp/blockedContacts?limit=&offset=&sort=desc`` (at most 100 a page) lists
  blocked transactional contacts with ``reason.code`` ``unsubscribedViaEmail``,
  ``unsubscribedViaApi``, ``unsubscribedViaMA``, ``adminBlocked``, ``hardBounce`` or
  ``contactFlaggedAsSpam`` and ``blockedAt``.
- Contact endpoints allow 10 requests a second (general plan); no concurrency limit is
  documented, so ten calls are in flight at most.

How mailprefs maps onto that:

- A tool-wide opt-out (and every complaint and hard bounce: Brevo has no writable
  bounce or complaint list) blocklists the contact through an import into the list
  ``settings.list_id``, 10,000 addresses a call (at most 2.7 MB of JSON, a third of the
  8 MB safe size). The import is acknowledged only once its process has completed:
  send() polls it (the retry policy's backoff between polls, at most ``IMPORT_POLLS``
  polls and ``import_wait_s`` seconds of waiting), and the addresses in its
  ``invalid_emails`` report come back as rejections. A process that does not complete
  in time (or fails) fails the call, so the chunk is not acknowledged and the next run
  imports it again (blocklisting twice changes nothing). That list must be one that
  only mailprefs uses: a blocklisted contact in it is our own push coming back, and
  pulls skip it (recording it after a local lift would undo a fresh opt-in). Without
  ``list_id`` each address is blocklisted with its own ``POST /contacts`` and pulls
  cannot tell our pushes from the tool's own.
- A topic opt-out removes the contact from the mapped Brevo list (``topic_map``: our
  topic -> list id); a lifted one adds it back. A lifted tool-wide opt-out un-blocklists
  the contact and takes it out of the ``list_id`` list in the same request. Complaints
  and hard bounces are never lifted.
- Erasure deletes the contact (404: already gone).
- Pulls read the contacts modified since the last pull (blocklisted ones, and list
  unsubscribes of mapped lists) and the blocked transactional contacts newer than the
  last one seen (unsubscribes, hard bounces, spam complaints; ``adminBlocked`` is the
  account's own doing and is skipped).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import OptOutKind, RemoteOptOut
from sync.base import HttpConnector
from sync.connector import Call, PullPage, PushItem, Rejection, SyncFailed, WebhookRejected

SIGNED = False
"""Brevo does not sign webhooks: the URL carries ``?key=`` (checked by /hooks)."""

IMPORT_BATCH = 10_000
"""Addresses per import call: at most 10,000 x ~270 bytes = 2.7 MB of JSON, well within
the 8 MB the docs call safe (10 MB is the hard limit)."""
LIST_BATCH = 150
"""Addresses per list add/remove call (the documented maximum)."""
CONTACTS_PAGE = 1000
"""Contacts per ``GET /contacts`` page (the documented maximum)."""
BLOCKED_PAGE = 100
"""Entries per ``GET /smtp/blockedContacts`` page (the documented maximum)."""
MAX_TIES = 2000
"""Items kept in a pull position to tell apart those sharing the last timestamp seen."""
IMPORT_POLLS = 20
"""Polls of an import's process at most before the call fails (not acknowledged)."""
IMPORT_WAIT_S = 120.0
"""...and at most this long waited between them in all (also never longer than the
retry policy's ``max_wait_s``)."""
ADDRESS = "{address}"
"""Placeholder in a call's path: send() puts the (encoded) address there, so dry-run
output and error messages never show one."""

Kind = Literal["blocklist", "unlist", "relist", "unblock", "delete"]

_NEVER_LIFTED = frozenset({"complaint", "hard_bounce", "soft_bounce"})
_REQUEST_CODES = frozenset({
    "missing_parameter", "bad_request", "method_not_allowed", "not_acceptable",
    "permission_denied", "account_under_validation", "not_enough_credits",
    "reseller_permission_denied", "unauthorized",
})
"""Error codes about the request as a whole, not about the address in it."""
_BLOCKED_KIND: dict[str, OptOutKind] = {
    "unsubscribedViaEmail": "unsubscribe",
    "unsubscribedViaApi": "unsubscribe",
    "unsubscribedViaMA": "unsubscribe",
    "hardBounce": "hard_bounce",
    "contactFlaggedAsSpam": "complaint",
}
_WEBHOOK_KIND: dict[str, OptOutKind] = {
    "unsubscribed": "unsubscribe",
    "unsubscribe": "unsubscribe",
    "spam": "complaint",
    "complaint": "complaint",
    "hard_bounce": "hard_bounce",
    "hard_bounced": "hard_bounce",
    "hardbounce": "hard_bounce",
}
_DONE = "completed"
_FAILED = frozenset({"failed", "cancelled", "canceled", "aborted"})
log = logging.getLogger("mailprefs.sync.brevo")
_ADDRESS_LIKE = re.compile(r"[^\s@,;:\"'<>()\[\]{}]+@[^\s@,;:\"'<>()\[\]{}]+")


class BrevoConnector(HttpConnector):
    kind = "brevo"
    max_batch = IMPORT_BATCH
    max_concurrency = 10
    """Brevo documents 10 requests a second for contact endpoints (general plan) and no
    concurrency limit: ten calls in flight at most."""
    import_polls = IMPORT_POLLS
    import_wait_s = IMPORT_WAIT_S

    def __init__(self, settings: ConnectorSettings, client: httpx.AsyncClient, **kw: Any
                 ) -> None:
        super().__init__(settings, client, **kw)
        self.problem = ""
        """A setting Brevo cannot work with: plan() and pull() fail with it."""
        self.suppression_list: int | None = None
        for key, value in [("list_id", settings.list_id),
                           *((f"topic_map.{t}", v) for t, v in self.topic_map.items())]:
            if value and not value.isdigit():
                self.problem = f"{self.name}: {key} must be a Brevo list id (a number)"
        if settings.list_id.isdigit():
            self.suppression_list = int(settings.list_id)

    def _check(self) -> None:
        if self.problem:
            raise SyncFailed(self.problem)

    # push -------------------------------------------------------------------------
    def _target(self, item: PushItem) -> tuple[Kind, int | None] | None:
        """What Brevo does for an item: (kind, list id); None where it cannot."""
        tool = self.tool_topic(item)
        list_id = int(tool) if tool is not None else None
        if item.action == "suppress":
            if list_id is None or item.reason in _NEVER_LIFTED:
                return "blocklist", None
            return "unlist", list_id
        if item.action == "lift":
            if item.reason in _NEVER_LIFTED:
                return None
            return ("unblock", None) if list_id is None else ("relist", list_id)
        if item.action == "delete":
            return "delete", None
        return None

    def _batch_size(self, kind: Kind) -> int:
        if kind in ("unlist", "relist"):
            return LIST_BATCH
        if kind == "blocklist" and self.suppression_list is not None:
            return IMPORT_BATCH
        return 1

    def plan(self, items: Sequence[PushItem]) -> list[Call]:
        self._check()
        calls: list[Call | None] = []
        """In the order the groups were opened (a slot is filled when its group closes)."""
        open_groups: dict[tuple[Kind, int | None], tuple[int, list[PushItem]]] = {}
        pending: dict[tuple[int | None, str], Kind] = {}
        """(list id or None for the contact itself, address) -> kind of its open group."""

        def close(key: tuple[Kind, int | None]) -> None:
            slot, group = open_groups.pop(key)
            calls[slot] = self._call(key[0], key[1], group)

        for item in items:
            target = self._target(item)
            if target is None:
                continue
            kind, list_id = target
            scope = list_id if kind in ("unlist", "relist") else None
            address = item.address.strip().lower()
            if pending.get((scope, address), kind) != kind:
                # The same address changes the other way: what came first goes first.
                for key in list(open_groups):
                    close(key)
                pending.clear()
            pending[(scope, address)] = kind
            if target not in open_groups:
                open_groups[target] = (len(calls), [])
                calls.append(None)
            group = open_groups[target][1]
            group.append(item)
            if len(group) >= self._batch_size(kind):
                close(target)
        for key in list(open_groups):
            close(key)
        return [call for call in calls if call is not None]

    def _call(self, kind: Kind, list_id: int | None, items: Sequence[PushItem]) -> Call:
        batch = tuple(items)
        emails = _unique(item.address for item in batch)
        if kind == "blocklist" and self.suppression_list is not None:
            return Call("POST", "/contacts/import", batch, json={
                "jsonBody": [{"email": email} for email in emails],
                "listIds": [self.suppression_list],
                "emailBlacklist": True,
                "updateExistingContacts": True,
                "emptyContactsAttributes": False,
                "disableNotification": True,
            }, note=f"blocklist, import into list {self.suppression_list}")
        if kind == "blocklist":
            return Call("POST", "/contacts", batch, json={
                "email": emails[0], "emailBlacklisted": True, "updateEnabled": True,
            }, note="blocklist the contact")
        if kind == "unlist":
            return Call("POST", f"/contacts/lists/{list_id}/contacts/remove", batch,
                        json={"emails": emails}, note=f"remove from list {list_id}")
        if kind == "relist":
            return Call("POST", f"/contacts/lists/{list_id}/contacts/add", batch,
                        json={"emails": emails}, note=f"add back to list {list_id}")
        params = {"identifierType": "email_id"}
        if kind == "unblock":
            body: dict[str, Any] = {"emailBlacklisted": False}
            if self.suppression_list is not None:
                body["unlinkListIds"] = [self.suppression_list]
            return Call("PUT", f"/contacts/{ADDRESS}", batch, json=body, params=params,
                        note="un-blocklist the contact")
        return Call("DELETE", f"/contacts/{ADDRESS}", batch, params=params,
                    note="delete the contact")

    def _headers(self) -> dict[str, str]:
        return {"api-key": self.api_key, "accept": "application/json"}

    async def send(self, call: Call) -> list[Rejection]:
        path = call.path
        if ADDRESS in path:
            path = path.replace(ADDRESS, quote(call.items[0].address.strip(), safe="@"))
        response = await self.http.request(call.method, self.url(path), json=call.json,
                                           params=call.params, headers=self._headers())
        status = response.status_code
        if status < 300:
            if call.path == "/contacts/import":
                return await self._import_outcome(call, response)
            return []
        code, words = _problem(response)
        where = f"{self.name}: {call.method} {call.path}: HTTP {status}"
        if call.path.endswith(("/contacts/remove", "/contacts/add")):
            if status == 400 and "already" in words.lower():
                return []  # nobody left to move: a re-sent call, or nobody there
            if status == 404:
                raise SyncFailed(f"{where}: {words} (is the list in topic_map a Brevo "
                                 f"list id?)")
            raise SyncFailed(f"{where}: {code}: {words}")
        if call.path == "/contacts/import" or len(call.items) != 1:
            raise SyncFailed(f"{where}: {code}: {words}")
        if status == 404 and call.method in ("PUT", "DELETE"):
            return []  # no such contact: nothing to un-blocklist or to delete
        if code in _REQUEST_CODES or status >= 500 or status in (405, 406, 413, 415):
            raise SyncFailed(f"{where}: {code}: {words}")
        return [Rejection(call.items[0], f"HTTP {status} {code}: {words}")]

    # the import's background process ---------------------------------------------
    async def _import_outcome(self, call: Call, response: httpx.Response
                              ) -> list[Rejection]:
        """Wait for the import's process, then the addresses it refused."""
        try:
            body = response.json()
        except ValueError:
            body = None
        process_id = body.get("processId") if isinstance(body, dict) else None
        if not isinstance(process_id, int) or isinstance(process_id, bool):
            raise SyncFailed(f"{self.name}: POST /contacts/import: HTTP "
                             f"{response.status_code} without a processId")
        process = await self._wait_for(process_id)
        info = process.get("info")
        report = info.get("import") if isinstance(info, dict) else None
        invalid = report.get("invalid_emails") if isinstance(report, dict) else None
        if invalid is None or invalid == "" or invalid == 0:
            return []
        if isinstance(invalid, str):
            refused = await self._report(process_id, invalid)
        else:
            # A count without the file that says which (an older shape): the import is
            # done, the others are blocklisted; say so rather than drop it quietly.
            note = (f"import process {process_id}: Brevo counted {invalid} invalid "
                    "address(es) without a report saying which")
            self.stats.errors.append(note)
            log.warning("%s: %s", self.name, note)
            return []
        problem = (f"import process {process_id}: Brevo refused the address "
                   "(invalid_emails report)")
        rejections = [Rejection(item, problem) for item in call.items
                      if item.address.strip().lower() in refused]
        found = {item.address.strip().lower() for item in call.items}
        if refused - found:
            self.stats.errors.append(f"import process {process_id}: "
                                     f"{len(refused - found)} refused row(s) not in the call")
        return rejections

    async def _wait_for(self, process_id: int) -> dict[str, Any]:
        """The process once ``completed``; SyncFailed when it failed, or has not
        completed after ``import_polls`` polls / ``import_wait_s`` of waiting."""
        path = f"/processes/{process_id}"
        budget = min(self.import_wait_s, self.http.policy.max_wait_s)
        waited, status = 0.0, ""
        for attempt in range(max(1, self.import_polls)):
            body = await self._get_json(path)
            if not isinstance(body, dict):
                raise SyncFailed(f"{self.name}: GET {path}: the answer is not a process")
            status = str(body.get("status") or "").strip().lower()
            if status == _DONE:
                return body
            if status in _FAILED:
                words = _ADDRESS_LIKE.sub("{address}", str(body.get("error") or ""))[:300]
                raise SyncFailed(f"{self.name}: import process {process_id} {status}"
                                 f"{': ' + words if words else ''}; sent again next run")
            delay = self.http.backoff(attempt)
            if attempt + 1 >= self.import_polls or waited + delay > budget:
                break
            waited += delay
            self.stats.waited_s += delay
            await self.http.sleep(delay)
        raise SyncFailed(f"{self.name}: import process {process_id} still "
                         f"{status or 'unfinished'} after {waited:.1f} s of waiting; the "
                         "chunk is not acknowledged and is sent again next run")

    async def _report(self, process_id: int, url: str) -> set[str]:
        """The lower-cased addresses in an ``invalid_emails`` CSV report."""
        base, found = urlsplit(self.base_url), urlsplit(url)
        if found.scheme not in ("http", "https") or not found.netloc:
            raise SyncFailed(f"{self.name}: import process {process_id}: the invalid_emails "
                             "report is not a URL")
        same = (found.scheme, found.netloc) == (base.scheme, base.netloc)
        # The API key goes to Brevo's API host only, never to a download host.
        headers = self._headers() if same else {"accept": "text/csv"}
        response = await self.http.request("GET", url, headers=headers)
        if response.status_code != 200:
            raise SyncFailed(f"{self.name}: import process {process_id}: the invalid_emails "
                             f"report answered HTTP {response.status_code}")
        refused: set[str] = set()
        text = response.text.lstrip("\ufeff")
        dialect = ";" if text.count(";") > text.count(",") else ","
        for row in csv.reader(io.StringIO(text), delimiter=dialect):
            for cell in row:
                value = cell.strip().strip('"').strip().lower()
                if "@" in value and " " not in value:
                    refused.add(value)
        return refused

    # pull -------------------------------------------------------------------------
    async def pull(self, position: str, until: datetime) -> AsyncIterator[PullPage]:
        self._check()
        state = _Position.load(self.name, position)
        until = min(_aware(until), datetime.now(UTC))
        contacts = _Source("contacts", CONTACTS_PAGE, 20, False, self._fetch_contacts,
                           _contact_key, "modifiedAt", self._contact_opt_outs)
        blocked = _Source("blocked", BLOCKED_PAGE, 5, True, self._fetch_blocked,
                          _blocked_key, "blockedAt", _blocked_opt_outs)
        async for opt_outs, cursor in _scan(contacts, state.contacts, until):
            state.contacts = cursor
            yield PullPage(opt_outs, state.dump())
        async for opt_outs, cursor in _scan(blocked, state.blocked, until):
            state.blocked = cursor
            yield PullPage(opt_outs, state.dump())

    async def _get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The JSON answer of a GET; SyncFailed for any other status or a body not JSON."""
        response = await self.http.request("GET", self.url(path), params=params,
                                           headers=self._headers())
        if response.status_code != 200:
            code, words = _problem(response)
            raise SyncFailed(f"{self.name}: GET {path}: HTTP {response.status_code} "
                             f"{code}: {words}")
        try:
            return response.json()
        except ValueError as exc:
            raise SyncFailed(f"{self.name}: GET {path}: the answer is not JSON") from exc

    async def _get(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        body = await self._get_json(path, params)
        found = body.get("contacts") if isinstance(body, dict) else None
        if found is None:
            return []  # Brevo leaves "contacts" out when there are none
        if not isinstance(found, list):
            raise SyncFailed(f"{self.name}: GET {path}: unexpected answer")
        return [item for item in found if isinstance(item, dict)]

    async def _fetch_contacts(self, since: datetime | None, offset: int
                              ) -> list[dict[str, Any]]:
        params = {"limit": str(CONTACTS_PAGE), "offset": str(offset), "sort": "asc"}
        if since is not None:
            # Brevo's filter is "modified after", to the millisecond: a second earlier
            # keeps the contacts modified at the very instant of the last one seen.
            params["modifiedSince"] = brevo_time(since - timedelta(seconds=1))
        return await self._get("/contacts", params)

    async def _fetch_blocked(self, since: datetime | None, offset: int
                             ) -> list[dict[str, Any]]:
        # Newest first: the scan stops at the first entry older than the last pull.
        params = {"limit": str(BLOCKED_PAGE), "offset": str(offset), "sort": "desc"}
        return await self._get("/smtp/blockedContacts", params)

    def _contact_opt_outs(self, item: dict[str, Any], at: datetime | None
                          ) -> list[RemoteOptOut]:
        email = item.get("email")
        if not isinstance(email, str) or not email:
            return []
        record = flatten({k: v for k, v in item.items() if k != "attributes"})
        found: list[RemoteOptOut] = []
        lists = {str(x) for x in item.get("listIds") or () if isinstance(x, int | str)}
        ours = self.suppression_list is not None and str(self.suppression_list) in lists
        if item.get("emailBlacklisted") is True and not ours:
            found.append(RemoteOptOut(email, "unsubscribe", None, at, record))
        for list_id in item.get("listUnsubscribed") or ():
            topic = self.topic_of.get(str(list_id))
            if topic is not None:  # lists we do not map are Brevo's own business
                found.append(RemoteOptOut(email, "unsubscribe", topic, at, record))
        return found


def _unique(addresses: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for address in addresses:
        seen.setdefault(address.strip(), None)
    return list(seen)


def _problem(response: httpx.Response) -> tuple[str, str]:
    """The tool's error code and words, with anything like an address taken out."""
    code, words = "", response.reason_phrase or ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or "")
        words = str(body.get("message") or words)
    return code or "error", _ADDRESS_LIKE.sub("{address}", words)[:300]


# pull machinery ---------------------------------------------------------------------
@dataclass
class _Scan:
    """A pass through a source that has not reached its end yet."""

    offset: int
    until: datetime
    wm: datetime | None
    ties: set[str]


@dataclass
class _Cursor:
    """Where a source stands: everything up to ``wm`` is recorded (``ties``: the items
    at exactly ``wm`` already recorded), and the pass under way, if any."""

    wm: datetime | None = None
    ties: set[str] = field(default_factory=set)
    scan: _Scan | None = None

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"wm": _iso(self.wm), "ties": sorted(self.ties)}
        if self.scan is not None:
            out["scan"] = {"offset": self.scan.offset, "until": _iso(self.scan.until),
                           "wm": _iso(self.scan.wm), "ties": sorted(self.scan.ties)}
        return out

    @classmethod
    def load(cls, data: Any) -> _Cursor:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        cursor = cls(_parse_stored(data.get("wm")), _ties(data.get("ties")))
        scan = data.get("scan")
        if scan is not None:
            until = _parse_stored(scan.get("until"))
            offset = scan.get("offset")
            if until is None or not isinstance(offset, int) or offset < 0:
                raise ValueError("bad scan")
            cursor.scan = _Scan(offset, until, _parse_stored(scan.get("wm")),
                                _ties(scan.get("ties")))
        return cursor


@dataclass
class _Position:
    contacts: _Cursor
    blocked: _Cursor

    @classmethod
    def load(cls, name: str, position: str) -> _Position:
        if not position:
            return cls(_Cursor(), _Cursor())
        try:
            data = json.loads(position)
            return cls(_Cursor.load(data["contacts"]), _Cursor.load(data["blocked"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SyncFailed(f"{name}: the stored pull position is not one this connector "
                             f"wrote; run sync with --full") from None

    def dump(self) -> str:
        return json.dumps({"v": 1, "contacts": self.contacts.dump(),
                           "blocked": self.blocked.dump()}, separators=(",", ":"))


@dataclass(frozen=True)
class _Source:
    name: str
    page_size: int
    overlap: int
    """Items each page re-reads from the one before: an item deleted at the tool while
    we page shifts the rest back, and must not make us skip one."""
    descending: bool
    """Newest first: the pass ends at the first item older than the watermark."""
    fetch: Callable[[datetime | None, int], Awaitable[list[dict[str, Any]]]]
    key: Callable[[dict[str, Any]], str]
    time_field: str
    opt_outs: Callable[[dict[str, Any], datetime | None], list[RemoteOptOut]]


async def _scan(src: _Source, cur: _Cursor, until: datetime
                ) -> AsyncIterator[tuple[list[RemoteOptOut], _Cursor]]:
    """One pass through a source: every item changed after the cursor's watermark and up
    to ``until``, page by page. Each page comes with the cursor to store: mid-pass it
    holds the offset reached (a crash resumes there); at the end, the new watermark."""
    scan = cur.scan or _Scan(0, until, cur.wm, set(cur.ties))
    limit = min(scan.until, until)
    offset, acc_wm, acc_ties = scan.offset, scan.wm, set(scan.ties)
    previous: set[str] = set()
    while True:
        items = await src.fetch(cur.wm, offset)
        found: list[RemoteOptOut] = []
        keys: set[str] = set()
        reached_old = False
        for item in items:
            at = _parse_tool_time(item.get(src.time_field))
            key = src.key(item)
            keys.add(key)
            if key in previous or (at is not None and at > limit):
                continue  # read on the page before, or left for the next pull
            if at is not None and cur.wm is not None and (
                    at < cur.wm or (at == cur.wm and key in cur.ties)):
                if src.descending and at < cur.wm:
                    reached_old = True
                    break
                continue
            found.extend(src.opt_outs(item, at))
            if at is None:
                continue
            if acc_wm is None or at > acc_wm:
                acc_wm, acc_ties = at, {key}
            elif at == acc_wm:
                acc_ties.add(key)
                if len(acc_ties) > MAX_TIES:
                    # Too many to remember: the next pull reads them again (overlap).
                    acc_wm, acc_ties = at - timedelta(milliseconds=1), set()
        if reached_old or len(items) < src.page_size:
            yield found, _Cursor(acc_wm, acc_ties)
            return
        offset += len(items) - src.overlap
        previous = keys
        yield found, _Cursor(cur.wm, cur.ties, _Scan(offset, limit, acc_wm, acc_ties))


def _contact_key(item: dict[str, Any]) -> str:
    return _digest(item.get("email"), item.get("modifiedAt"), item.get("emailBlacklisted"),
                   item.get("listUnsubscribed"))


def _blocked_key(item: dict[str, Any]) -> str:
    reason = item.get("reason")
    code = reason.get("code") if isinstance(reason, dict) else reason
    return _digest(item.get("email"), item.get("senderEmail"), code, item.get("blockedAt"))


def _blocked_opt_outs(item: dict[str, Any], at: datetime | None) -> list[RemoteOptOut]:
    email = item.get("email")
    reason = item.get("reason")
    code = reason.get("code") if isinstance(reason, dict) else None
    kind = _BLOCKED_KIND.get(str(code))
    if not isinstance(email, str) or not email or kind is None:
        return []  # adminBlocked: blocked by the account itself, not by the recipient
    return [RemoteOptOut(email, kind, None, at, flatten(item))]


def _digest(*parts: Any) -> str:
    text = "\x1f".join(json.dumps(p, sort_keys=True, default=str) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _ties(value: Any) -> set[str]:
    if value is None:
        return set()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("bad ties")
    return set(value)


# times ------------------------------------------------------------------------------
def brevo_time(at: datetime) -> str:
    """Brevo's date-time format: ``YYYY-MM-DDTHH:mm:ss.SSSZ`` (UTC)."""
    at = _aware(at).astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else _aware(at).astimezone(UTC).isoformat()


def _parse_stored(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("bad time")
    return _aware(datetime.fromisoformat(value))


def _parse_tool_time(value: Any) -> datetime | None:
    """A Brevo date-time (``2024-05-01T10:00:00.123+02:00`` or ``...Z``), to the ms."""
    if not isinstance(value, str) or not value:
        return None
    try:
        at = _aware(datetime.fromisoformat(value.strip().replace(" ", "T", 1)))
    except ValueError:
        return None
    return at.replace(microsecond=at.microsecond // 1000 * 1000).astimezone(UTC)


# evidence ---------------------------------------------------------------------------
def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A tool's item as ``{"a.b": "text"}`` (lists joined with commas)."""
    out: dict[str, str] = {}
    for name, item in value.items():
        key = f"{prefix}{name}"
        if isinstance(item, Mapping):
            out.update(flatten(item, f"{key}."))
        elif isinstance(item, list):
            simple = all(isinstance(x, str | int | float) and not isinstance(x, bool)
                         for x in item)
            out[key] = ",".join(str(x) for x in item) if simple else json.dumps(item)
        elif isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif item is None:
            out[key] = ""
        else:
            out[key] = str(item)
    return out


# webhooks ---------------------------------------------------------------------------
def parse_webhook(settings: ConnectorSettings, key: str, headers: Mapping[str, str],
                  query: Mapping[str, str], body: bytes, now: float) -> list[RemoteOptOut]:
    """Unsubscribes, spam complaints and hard bounces from Brevo's marketing webhooks
    (``{"event": "unsubscribed"|"spam"|"hard_bounce", "email", "list_id": [..],
    "ts_event"}``) and transactional ones (``{"event": "unsubscribed"|"spam"|
    "hard_bounce", "email", "ts_event", "message-id"}``); a batched webhook sends a list
    of them. Other events (opened, delivered, soft_bounce...) are ignored.

    A marketing unsubscribe names the lists it concerns: the mapped ones become topic
    opt-outs; when none is mapped (or none named, as in a transactional one) it is an
    opt-out from everything (Brevo's own unsubscribe link blocklists the contact)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "the body is not JSON") from None
    events = data if isinstance(data, list) else [data]
    topic_of = {str(tool): topic for topic, tool in settings.topic_map.items()}
    found: list[RemoteOptOut] = []
    for position, event in enumerate(events, start=1):
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise WebhookRejected(400, f"item {position} is not a Brevo webhook event")
        kind = _WEBHOOK_KIND.get(event["event"].strip().lower().replace("-", "_"))
        if kind is None:
            continue
        email = event.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise WebhookRejected(400, f"item {position}: no recipient address")
        at = _event_time(event, now)
        record = flatten(event)
        if kind == "unsubscribe":
            lists = event.get("list_id")
            named = lists if isinstance(lists, list) else [lists] if lists else []
            topics = _unique(topic_of[str(x)] for x in named if str(x) in topic_of)
            if topics:
                found.extend(RemoteOptOut(email, kind, t, at, record) for t in topics)
                continue
        found.append(RemoteOptOut(email, kind, None, at, record))
    return found


def _event_time(event: Mapping[str, Any], now: float) -> datetime:
    """``ts_event`` (UTC seconds), else ``ts_epoch`` (ms), else ``ts``, else now."""
    for name, scale in (("ts_event", 1), ("ts_epoch", 1000), ("ts", 1)):
        value = event.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            try:
                return datetime.fromtimestamp(value / scale, UTC)
            except (OverflowError, OSError, ValueError):
                continue
    return datetime.fromtimestamp(now, UTC)
