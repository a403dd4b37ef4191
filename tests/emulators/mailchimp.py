"""A local Mailchimp: the audience members of the Marketing API 3.0.

Endpoints (HTTP Basic auth, any user name, the API key as password; else 401 "API Key
Invalid"); every ``{list_id}`` must be one of the emulator's audiences, else 404
"Resource Not Found":

- ``GET /ping``: ``{"health_status": "Everything's Chimpy!"}``.
- ``POST /lists/{list_id}`` (batch subscribe or unsubscribe) ``{"members": [{"email_address",
  "status", ...}], "update_existing": bool}``, at most 500 members: 200 with
  ``new_members``, ``updated_members``, ``errors`` (``{"email_address", "error",
  "error_code"}``), ``total_created``, ``total_updated``, ``error_count``. Per-address
  errors: an existing member without ``update_existing`` (``ERROR_CONTACT_EXISTS``), an
  address that looks fake or invalid, a permanently deleted member, subscribing someone
  unsubscribed or cleaned (compliance state), a status the API cannot set (``cleaned``),
  a duplicate in the request (unless ``?skip_duplicate_check=true``). A body that is not
  JSON is 400 "JSON Parse Error"; one that breaks the schema (no members list, more than
  500, a member without an address or with an unknown status) is 400 "Invalid Resource"
  with an ``errors`` array.
- ``PUT /lists/{list_id}/members/{subscriber_hash}`` (add or update one member, with
  ``status_if_new`` / ``status``) and ``GET`` of the same path.
- ``POST /lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent``: 204, or
  404 when there is no such member (a deleted member stays deleted: it cannot be
  re-imported).
- ``GET /lists/{list_id}/members`` with ``status``, ``since_last_changed`` /
  ``before_last_changed`` (ISO 8601, both exclusive), ``sort_field=last_changed`` /
  ``sort_dir``, ``count`` (default 10, at most 1000), ``offset``, ``fields`` /
  ``exclude_fields``; ``{"members", "list_id", "total_items"}``. Times are whole seconds
  with ``+00:00``.

Errors are ``application/problem+json`` documents ``{"type", "title", "status",
"detail", "instance"}``. The tool allows 10 simultaneous connections per key; above that
(and for injected faults) it answers 429 "Too Many Requests" with no Retry-After header
(none is documented). Where the documentation is silent the emulator chooses: the
wording of schema messages, duplicate handling, an API unsubscribe's
``unsubscribe_reason`` ("N/A (Unsubscribed by an admin)"), and a complaint made inside
the tool showing as ``unsubscribed`` with reason "Abuse report".
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from tests.emulators.base import Emulator, Faults, Request, Response

MAX_MEMBERS = 500
MAX_COUNT = 1000
ERRORS_URL = "https://mailchimp.com/developer/marketing/docs/errors/"
PROBLEM = "application/problem+json; charset=utf-8"
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
SETTABLE = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
ADMIN_REASON = "N/A (Unsubscribed by an admin)"
USER_REASON = "I no longer want to receive these emails"
ABUSE_REASON = "Abuse report"
FAKE_DOMAINS = ("example.com", "example.net", "example.org")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def subscriber_hash(address: str) -> str:
    return hashlib.md5(address.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": ERRORS_URL, "title": title, "status": status, "detail": detail,
            "instance": str(uuid.uuid4()), **extra}
    return Response(status, body, content_type=PROBLEM)


def invalid(field: str, message: str) -> Response:
    return problem(400, "Invalid Resource", "The resource submitted could not be validated. "
                   "For field-specific details, see the 'errors' array.",
                   errors=[{"field": field, "message": message}])


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(value: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


class MailchimpEmulator(Emulator):
    name = "mailchimp"
    max_in_flight = 10
    """Mailchimp: 10 simultaneous connections per API key."""

    def __init__(
        self,
        api_key: str,
        *,
        list_id: str,
        audiences: Iterable[str] = (),
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        fake_domains: Iterable[str] = FAKE_DOMAINS,
    ) -> None:
        super().__init__(faults)
        self.api_key = api_key
        self.list_id = list_id
        self.clock = clock
        self.fake_domains = {d.lower() for d in fake_domains}
        self.lists: dict[str, dict[str, dict[str, Any]]] = {
            a: {} for a in (list_id, *audiences)
        }
        """audience -> subscriber hash -> the member as the API shows it."""
        self.changed: dict[tuple[str, str], int] = {}
        """(audience, hash) -> last_changed in epoch seconds (for filters)."""
        self.deleted: dict[str, set[str]] = {a: set() for a in self.lists}
        """audience -> hashes of permanently deleted members (never re-imported)."""
        self._erased: dict[str, str] = {}
        """hash -> lower-cased address of deleted members: only for view() (Mailchimp
        itself keeps the hash alone)."""
        self._web_id = 1000
        self._guard = threading.Lock()
        """State is also changed from the test's thread (tool_opt_out, add_member)."""
        lists = r"/lists/(?P<list_id>[^/]+)"
        member = lists + r"/members/(?P<hash>[^/]+)"
        self.route("GET", r"/ping", "ping", self._ping)
        self.route("POST", lists, "batch", self._batch)
        self.route("GET", lists + r"/members", "members", self._members)
        self.route("GET", member, "member", self._member)
        self.route("PUT", member, "put_member", self._put_member)
        self.route("POST", member + r"/actions/delete-permanent", "delete_permanent",
                   self._delete_permanent)

    # the tool's answers -----------------------------------------------------
    def authorised(self, request: Request) -> bool:
        auth = request.basic_auth()
        return auth is not None and auth[1] == self.api_key

    def unauthorised(self) -> Response:
        return problem(401, "API Key Invalid", "Your API key may be invalid, or you've "
                       "attempted to access the wrong datacenter.")

    def rate_limited(self, retry_after_s: float) -> Response:
        return problem(429, "Too Many Requests", "You have exceeded the limit of 10 "
                       "simultaneous connections.")

    def server_error(self) -> Response:
        return problem(500, "Internal Server Error", "An unexpected internal error has "
                       "occurred. Please contact Support for more information.")

    def not_found(self) -> Response:
        return problem(404, "Resource Not Found", "The requested resource could not be "
                       "found.")

    # state helpers (call with self._guard held) -------------------------------
    def _now(self) -> int:
        return int(self.clock())

    def _fake(self, address: str) -> bool:
        if not _ADDRESS.match(address):
            return True
        return address.rpartition("@")[2].lower() in self.fake_domains

    def _new_member(self, audience: str, address: str, status: str, source: str) -> None:
        self._web_id += 1
        digest = subscriber_hash(address)
        now = self._now()
        self.lists[audience][digest] = {
            "id": digest,
            "email_address": address,
            "unique_email_id": digest[:10],
            "contact_id": digest,
            "full_name": "",
            "web_id": self._web_id,
            "email_type": "html",
            "status": status,
            "merge_fields": {},
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
            "ip_signup": "",
            "timestamp_signup": "",
            "ip_opt": "",
            "timestamp_opt": _iso(now),
            "member_rating": 2,
            "last_changed": _iso(now),
            "language": "",
            "vip": False,
            "email_client": "",
            "source": source,
            "tags_count": 0,
            "tags": [],
            "list_id": audience,
        }
        self.changed[(audience, digest)] = now
        if status == "unsubscribed":
            self.lists[audience][digest]["unsubscribe_reason"] = ADMIN_REASON

    def _set_status(self, audience: str, digest: str, status: str, reason: str) -> bool:
        """Change a member's status; False when it already had it (nothing changes)."""
        member = self.lists[audience][digest]
        if member["status"] == status:
            return False
        member["status"] = status
        if status == "unsubscribed":
            member["unsubscribe_reason"] = reason
        else:
            member.pop("unsubscribe_reason", None)
        now = self._now()
        member["last_changed"] = _iso(now)
        self.changed[(audience, digest)] = now
        return True

    def _apply(self, audience: str, address: str, status: str, update_existing: bool
               ) -> tuple[str, dict[str, Any] | str]:
        """One member of a batch or PUT: ('new'|'updated', member) or ('error', message)."""
        if self._fake(address):
            return "error", (f"{address} looks fake or invalid, please enter a real email "
                             "address.")
        digest = subscriber_hash(address)
        if digest in self.deleted[audience]:
            return "error", (f"{address} was permanently deleted and cannot be re-imported. "
                             "The contact must re-subscribe to get back on the list.")
        if status == "cleaned":
            return "error", "The status of a contact cannot be set to cleaned."
        member = self.lists[audience].get(digest)
        if member is None:
            self._new_member(audience, address, status, "API - Generic")
            return "new", self.lists[audience][digest]
        if not update_existing:
            return "error", (f"{address} is already a list member. Use PUT to insert or "
                             "update list members.")
        current = member["status"]
        if status in ("subscribed", "pending", "transactional") and current in (
            "unsubscribed", "cleaned"
        ):
            return "error", (f"{address} is in a compliance state due to unsubscribe, "
                             "bounce, or compliance review and cannot be subscribed.")
        if current == "cleaned":
            return "updated", member  # Mailchimp's own bounce state is not overwritten
        self._set_status(audience, digest, status, ADMIN_REASON)
        return "updated", member

    # endpoints ----------------------------------------------------------------
    async def _ping(self, request: Request) -> Response:
        return Response(200, {"health_status": "Everything's Chimpy!"})

    async def _batch(self, request: Request) -> Response:
        audience = request.params["list_id"]
        if audience not in self.lists:
            return self.not_found()
        try:
            body = request.json()
        except ValueError:
            return problem(400, "JSON Parse Error", "We encountered an unspecified JSON "
                           "parsing error.")
        if not isinstance(body, dict):
            return invalid("", "This value should be of type object.")
        members = body.get("members")
        if members is None:
            return invalid("members", "This value should not be blank.")
        if not isinstance(members, list):
            return invalid("members", "This value should be of type array.")
        if len(members) > MAX_MEMBERS:
            return invalid("members", f"This collection should contain {MAX_MEMBERS} "
                           "elements or less.")
        for i, entry in enumerate(members):
            if not isinstance(entry, dict):
                return invalid(f"members[{i}]", "This value should be of type object.")
            if not isinstance(entry.get("email_address"), str) or not entry["email_address"]:
                return invalid(f"members[{i}].email_address", "This value should not be "
                               "blank.")
            if entry.get("status") not in SETTABLE:
                return invalid(f"members[{i}].status", "The value you selected is not a "
                               "valid choice.")
        update_existing = body.get("update_existing") is True
        skip_duplicates = request.arg("skip_duplicate_check", "false") == "true"
        new: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        seen: set[str] = set()
        with self._guard:
            for entry in members:
                address = entry["email_address"]
                digest = subscriber_hash(address)
                if digest in seen:
                    if not skip_duplicates:
                        errors.append({"email_address": address, "error_code": "ERROR_GENERIC",
                                       "error": f"{address} is a duplicate in this request."})
                    continue
                seen.add(digest)
                outcome, result = self._apply(audience, address, entry["status"],
                                              update_existing)
                if isinstance(result, str):
                    code = ("ERROR_CONTACT_EXISTS" if "already a list member" in result
                            else "ERROR_GENERIC")
                    errors.append({"email_address": address, "error": result,
                                   "error_code": code})
                elif outcome == "new":
                    new.append(dict(result))
                else:
                    updated.append(dict(result))
        return Response(200, {
            "new_members": new, "updated_members": updated, "errors": errors,
            "total_created": len(new), "total_updated": len(updated),
            "error_count": len(errors), "_links": [],
        })

    async def _member(self, request: Request) -> Response:
        audience, digest = request.params["list_id"], request.params["hash"].lower()
        with self._guard:
            member = self.lists.get(audience, {}).get(digest)
            return self.not_found() if member is None else Response(200, dict(member))

    async def _put_member(self, request: Request) -> Response:
        audience, digest = request.params["list_id"], request.params["hash"].lower()
        if audience not in self.lists:
            return self.not_found()
        try:
            body = request.json()
        except ValueError:
            return problem(400, "JSON Parse Error", "We encountered an unspecified JSON "
                           "parsing error.")
        if not isinstance(body, dict) or not isinstance(body.get("email_address"), str):
            return invalid("email_address", "This value should not be blank.")
        address = body["email_address"]
        if subscriber_hash(address) != digest:
            return problem(400, "Invalid Resource", "The subscriber hash does not match the "
                           "email address.")
        with self._guard:
            exists = digest in self.lists[audience]
            status = body.get("status") if exists else body.get("status_if_new",
                                                                body.get("status"))
            if status not in SETTABLE:
                return invalid("status_if_new" if not exists else "status",
                               "The value you selected is not a valid choice.")
            _, result = self._apply(audience, address, status, True)
            if isinstance(result, str):
                title = ("Forgotten Email Not Subscribed" if "permanently deleted" in result
                         else "Member In Compliance State" if "compliance" in result
                         else "Invalid Resource")
                return problem(400, title, result)
            return Response(200, dict(result))

    async def _delete_permanent(self, request: Request) -> Response:
        audience, digest = request.params["list_id"], request.params["hash"].lower()
        if audience not in self.lists:
            return self.not_found()
        with self._guard:
            member = self.lists[audience].pop(digest, None)
            if member is None:
                return self.not_found()
            self._erased[digest] = str(member["email_address"]).lower()
            self.changed.pop((audience, digest), None)
            self.deleted[audience].add(digest)
        return Response(204, None)

    async def _members(self, request: Request) -> Response:
        audience = request.params["list_id"]
        if audience not in self.lists:
            return self.not_found()
        status = request.arg("status")
        if status is not None and status not in STATUSES:
            return invalid("status", "The value you selected is not a valid choice.")
        bounds: dict[str, int] = {}
        for name in ("since_last_changed", "before_last_changed"):
            value = request.arg(name)
            if value:
                parsed = _epoch(value)
                if parsed is None:
                    return invalid(name, "This value is not a valid datetime.")
                bounds[name] = parsed
        try:
            count = int(request.arg("count", "10") or "10")
            offset = int(request.arg("offset", "0") or "0")
        except ValueError:
            return invalid("count", "This value should be of type integer.")
        if count < 0 or count > MAX_COUNT:
            return invalid("count", f"This value should be between 0 and {MAX_COUNT}.")
        if offset < 0:
            return invalid("offset", "This value should be 0 or more.")
        sort_field = request.arg("sort_field")
        if sort_field not in (None, "timestamp_opt", "timestamp_signup", "last_changed"):
            return invalid("sort_field", "The value you selected is not a valid choice.")
        with self._guard:
            found = []
            for digest, member in self.lists[audience].items():
                changed = self.changed[(audience, digest)]
                if status is not None and member["status"] != status:
                    continue
                if "since_last_changed" in bounds and changed <= bounds["since_last_changed"]:
                    continue
                if "before_last_changed" in bounds and \
                        changed >= bounds["before_last_changed"]:
                    continue
                found.append((changed, member["web_id"], dict(member)))
        if sort_field == "last_changed":
            found.sort(key=lambda f: (f[0], f[1]),
                       reverse=request.arg("sort_dir", "DESC") == "DESC")
        page = [m for _, _, m in found[offset:offset + count]]
        body: dict[str, Any] = {"members": page, "list_id": audience,
                                "total_items": len(found), "_links": []}
        return Response(200, _select(body, request.arg("fields"),
                                     request.arg("exclude_fields")))

    # what tests look at ---------------------------------------------------------
    def add_member(self, address: str, list_id: str | None = None,
                   status: str = "subscribed") -> None:
        """A member who signed up inside the tool (test setup)."""
        audience = list_id or self.list_id
        with self._guard:
            digest = subscriber_hash(address)
            if digest in self.lists[audience]:
                self._set_status(audience, digest, status, USER_REASON)
            else:
                self._new_member(audience, address, status, "Hosted Signup Form")

    def state(self) -> Any:
        with self._guard:
            return {
                "lists": {a: sorted((json.loads(json.dumps(m)) for m in members.values()),
                                    key=lambda m: m["web_id"])
                          for a, members in self.lists.items()},
                "deleted": {a: sorted(d) for a, d in self.deleted.items()},
            }

    def status_of(self, address: str, list_id: str | None = None) -> str | None:
        with self._guard:
            member = self.lists[list_id or self.list_id].get(subscriber_hash(address))
            return None if member is None else str(member["status"])

    def view(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        with self._guard:
            for audience, members in self.lists.items():
                label = "global" if audience == self.list_id else f"topic:{audience}"
                for member in members.values():
                    labels = out.setdefault(member["email_address"].lower(), set())
                    if member["status"] in ("unsubscribed", "cleaned"):
                        labels.add(label)
                    if member["status"] == "cleaned":
                        labels.add("bounce")
                    if "abuse" in str(member.get("unsubscribe_reason", "")).lower():
                        labels.add("complaint")
            for hashes in self.deleted.values():
                for digest in hashes:
                    address = self._erased.get(digest, digest)
                    out.setdefault(address, set()).add("deleted")
        return out

    def tool_opt_out(self, address: str, kind: str, topic: str | None = None) -> None:
        """``unsubscribe`` (of audience ``topic``, else the main one): status unsubscribed
        with the recipient's reason; ``complaint``: unsubscribed, reason "Abuse report";
        ``bounce``: cleaned. The member is created first if the audience lacks it."""
        audience = topic or self.list_id
        if kind not in ("unsubscribe", "complaint", "bounce"):
            raise ValueError(f"unknown opt-out kind {kind!r}")
        with self._guard:
            digest = subscriber_hash(address)
            if digest not in self.lists[audience]:
                self._new_member(audience, address, "subscribed", "Hosted Signup Form")
            if kind == "bounce":
                self._set_status(audience, digest, "cleaned", "")
            else:
                reason = ABUSE_REASON if kind == "complaint" else USER_REASON
                if not self._set_status(audience, digest, "unsubscribed", reason):
                    member = self.lists[audience][digest]
                    member["unsubscribe_reason"] = reason
                    now = self._now()
                    member["last_changed"] = _iso(now)
                    self.changed[(audience, digest)] = now


def _select(body: dict[str, Any], fields: str | None, exclude: str | None) -> dict[str, Any]:
    """Mailchimp's partial responses: ``fields`` / ``exclude_fields`` with dot notation
    for the members' own fields."""
    if fields:
        wanted = [f.strip() for f in fields.split(",") if f.strip()]
        top = {f.split(".", 1)[0] for f in wanted}
        inner = {f.split(".", 1)[1] for f in wanted if f.startswith("members.")}
        body = {k: v for k, v in body.items() if k in top}
        if "members" in body and inner:
            body["members"] = [{k: v for k, v in m.items() if k in inner}
                               for m in body["members"]]
    if exclude:
        dropped = [f.strip() for f in exclude.split(",") if f.strip()]
        inner = {f.split(".", 1)[1] for f in dropped if f.startswith("members.")}
        body = {k: v for k, v in body.items() if k not in dropped}
        if "members" in body and inner:
            body["members"] = [{k: v for k, v in m.items() if k not in inner}
                               for m in body["members"]]
    return body
