"""A faithful local emulator of the Amazon SES v2 (``sesv2``) endpoints sync uses.

It speaks the AWS REST-JSON protocol the way botocore's ``sesv2`` service model
(``botocore/data/sesv2/2019-09-27/service-2.json``) expects it, so the real boto3
client talks to it unchanged:

- account suppression list: ``PutSuppressedDestination``
  (``PUT /v2/email/suppression/addresses``), ``GetSuppressedDestination`` /
  ``DeleteSuppressedDestination`` (``/v2/email/suppression/addresses/{EmailAddress}``),
  ``ListSuppressedDestinations`` (``GET /v2/email/suppression/addresses`` with
  ``Reason``, ``StartDate``, ``EndDate``, ``NextToken``, ``PageSize`` ≤ 1000);
- one contact list (SES allows one per account and region) with topics:
  ``CreateContact`` (``POST .../contacts``), ``GetContact`` / ``UpdateContact`` /
  ``DeleteContact`` (``.../contacts/{EmailAddress}``), ``ListContacts``
  (``POST .../contacts/list``, ``Filter``, ``PageSize`` ≤ 1000, ``NextToken``).

Behaviour it copies from the documentation and the service:

- auth: a SigV4 ``Authorization`` header whose credential scope names the expected
  access key id, the region and the ``ses`` signing name (the signature maths is not
  checked); otherwise 403 ``UnrecognizedClientException`` /
  ``MissingAuthenticationTokenException``;
- errors: the status the model gives, ``x-amzn-ErrorType: <Code>`` and a JSON body
  ``{"message": ...}``; every answer carries ``x-amzn-RequestId``;
- ``UpdateContact`` *replaces* the contact's topic preferences ("you must specify
  all existing topic preferences ... otherwise, all your existing preferences will
  be removed") and its ``UnsubscribeAll`` flag (absent = false);
- ``ListContacts`` pages over the whole list and filters inside each page, so a
  page may come back empty with a ``NextToken`` (as AWS does): callers must page
  until there is no token;
- a ``PutSuppressedDestination`` of an address already listed updates its reason
  and ``LastUpdateTime`` (no duplicates);
- throttling: 429 ``TooManyRequestsException`` (SES sends no Retry-After); the
  account-level "1 request per second" quota of the management API can be switched
  on with ``rate_per_s``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.emulators.base import Emulator, Faults, Request, Response

PAGE_MAX = 1000
"""PageSize limit of ListSuppressedDestinations and ListContacts."""
DEFAULT_PAGE = 100

_EMAIL = re.compile(r"^[^@\s\"(),:;<>\[\\\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")

_BASE = r"/v2/email"
_CONTACTS = _BASE + r"/contact-lists/(?P<list>[^/]+)/contacts"


class ApiError(Exception):
    """An SES error answer: status, ``x-amzn-ErrorType`` code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadRequestException", message)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _parse_time(value: str, name: str) -> float:
    """A querystring timestamp: botocore sends ISO 8601; epoch seconds also accepted."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"Invalid value for {name}: {value}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class SesEmulator(Emulator):
    """Amazon SES v2 account: suppression list plus one contact list with topics."""

    name = "ses"
    max_in_flight = 16
    """SES documents a *rate* (1 management request per second, short bursts allowed),
    not a concurrency limit; more than this many requests at once are throttled."""

    def __init__(
        self,
        access_key_id: str,
        *,
        contact_list: str = "customers",
        topics: dict[str, str] | None = None,
        region: str = "eu-west-1",
        faults: Faults | None = None,
        rate_per_s: float | None = None,
        burst: int = 5,
    ) -> None:
        super().__init__(faults)
        self.access_key_id = access_key_id
        self.region = region
        self.contact_list = contact_list
        self.topics: dict[str, str] = dict(
            topics if topics is not None else {"news": "OPT_IN", "events": "OPT_IN"}
        )
        """Topic name -> DefaultSubscriptionStatus."""
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._refilled = time.monotonic()
        self.suppressed: dict[str, dict[str, Any]] = {}
        """Lower-cased address -> {EmailAddress, Reason, LastUpdateTime, ...}."""
        self.contacts: dict[str, dict[str, Any]] = {}
        """Lower-cased address -> contact (insertion ordered, as ListContacts pages)."""
        self.deleted: set[str] = set()
        self.throttled = 0
        self._mutex = threading.Lock()
        """State is changed from handlers (uvicorn's thread) and from tests
        (``tool_opt_out``): a thread lock, held for short sections without awaits."""
        self._clock = 0.0
        c = _CONTACTS
        self.route("PUT", _BASE + r"/suppression/addresses", "put_suppressed", self._put_suppressed)
        self.route("GET", _BASE + r"/suppression/addresses", "list_suppressed",
                   self._list_suppressed)
        self.route("GET", _BASE + r"/suppression/addresses/(?P<email>[^/]+)", "get_suppressed",
                   self._get_suppressed)
        self.route("DELETE", _BASE + r"/suppression/addresses/(?P<email>[^/]+)",
                   "delete_suppressed", self._delete_suppressed)
        self.route("POST", c + r"/list", "list_contacts", self._list_contacts)
        self.route("POST", c, "create_contact", self._create_contact)
        self.route("GET", c + r"/(?P<email>[^/]+)", "get_contact", self._get_contact)
        self.route("PUT", c + r"/(?P<email>[^/]+)", "update_contact", self._update_contact)
        self.route("DELETE", c + r"/(?P<email>[^/]+)", "delete_contact", self._delete_contact)

    # auth and the tool's error answers --------------------------------------
    def authorised(self, request: Request) -> bool:
        found = _CREDENTIAL.search(request.headers.get("authorization", ""))
        if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return False
        if found is None:
            return False
        key, _day, region, service = found.groups()
        return key == self.access_key_id and region == self.region and service == "ses"

    @staticmethod
    def error(status: int, code: str, message: str) -> Response:
        return Response(status, {"message": message},
                        {"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())})

    def unauthorised(self) -> Response:
        return self.error(403, "UnrecognizedClientException",
                          "The security token included in the request is invalid.")

    def rate_limited(self, retry_after_s: float) -> Response:
        # SES sends no Retry-After: clients back off on their own.
        return self.error(429, "TooManyRequestsException", "Too Many Requests")

    def server_error(self) -> Response:
        return self.error(500, "InternalFailure",
                          "The request processing has failed because of an unknown error.")

    def not_found(self) -> Response:
        return self.error(404, "UnknownOperationException", "Unknown operation")

    # what tests look at -----------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._mutex:
            return {
                "SuppressedDestinations": [dict(v) for v in self.suppressed.values()],
                "ContactLists": {
                    self.contact_list: {
                        "Topics": [{"TopicName": t, "DefaultSubscriptionStatus": d}
                                   for t, d in self.topics.items()],
                        "Contacts": [self._contact_out(c, full=True)
                                     for c in self.contacts.values()],
                    }
                },
            }

    def view(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        with self._mutex:
            for key, entry in self.suppressed.items():
                out.setdefault(key, set()).add(
                    "bounce" if entry["Reason"] == "BOUNCE" else "complaint")
            for key, contact in self.contacts.items():
                labels = out.setdefault(key, set())
                if contact["UnsubscribeAll"]:
                    labels.add("global")
                for topic, status in contact["TopicPreferences"].items():
                    if status == "OPT_OUT":
                        labels.add(f"topic:{topic}")
            for key in self.deleted:
                out.setdefault(key, set()).add("deleted")
        return {k: v for k, v in out.items() if v}

    def tool_opt_out(self, address: str, kind: str, topic: str | None = None) -> None:
        with self._mutex:
            now = self._now()
            if kind in ("bounce", "complaint"):
                self._suppress(address, "BOUNCE" if kind == "bounce" else "COMPLAINT", now)
                return
            if kind != "unsubscribe":
                raise ValueError(f"unknown opt-out kind {kind!r}")
            if topic is not None and topic not in self.topics:
                raise ValueError(f"no topic {topic!r} in the contact list")
            key = address.lower()
            contact = self.contacts.get(key)
            if contact is None:
                contact = self._new_contact(address, now)
                self.contacts[key] = contact
                self.deleted.discard(key)
            if topic is None:
                contact["UnsubscribeAll"] = True
            else:
                contact["TopicPreferences"][topic] = "OPT_OUT"
            contact["LastUpdatedTimestamp"] = now

    # helpers ----------------------------------------------------------------
    async def _serve(self, request: Request, send: Any) -> None:
        if self.rate_per_s is not None and not request.path.startswith("/_emulator/"):
            with self._mutex:
                now = time.monotonic()
                self._tokens = min(float(self.burst),
                                   self._tokens + (now - self._refilled) * self.rate_per_s)
                self._refilled = now
                allowed = self._tokens >= 1.0
                if allowed:
                    self._tokens -= 1.0
            if not allowed:
                self.throttled += 1
                await self._send(send, self.rate_limited(0.0))
                return
        await super()._serve(request, send)

    def _now(self) -> float:
        """Wall-clock epoch seconds, strictly increasing (so every change is ordered)."""
        now = round(time.time(), 6)
        self._clock = max(now, round(self._clock + 0.000001, 6))
        return self._clock

    def _suppress(self, address: str, reason: str, now: float) -> None:
        key = address.lower()
        entry = self.suppressed.get(key)
        if entry is None:
            self.suppressed[key] = {"EmailAddress": address, "Reason": reason,
                                    "LastUpdateTime": now, "CreatedTime": now}
        else:
            entry["Reason"] = reason
            entry["LastUpdateTime"] = now

    def _new_contact(self, address: str, now: float) -> dict[str, Any]:
        return {"EmailAddress": address, "TopicPreferences": {}, "UnsubscribeAll": False,
                "AttributesData": None, "CreatedTimestamp": now, "LastUpdatedTimestamp": now}

    def _contact_out(self, contact: dict[str, Any], *, full: bool) -> dict[str, Any]:
        prefs = contact["TopicPreferences"]
        out: dict[str, Any] = {
            "EmailAddress": contact["EmailAddress"],
            "TopicPreferences": [{"TopicName": t, "SubscriptionStatus": s}
                                 for t, s in prefs.items()],
            "TopicDefaultPreferences": [{"TopicName": t, "SubscriptionStatus": d}
                                        for t, d in self.topics.items() if t not in prefs],
            "UnsubscribeAll": contact["UnsubscribeAll"],
            "LastUpdatedTimestamp": contact["LastUpdatedTimestamp"],
        }
        if full:
            out["ContactListName"] = self.contact_list
            out["CreatedTimestamp"] = contact["CreatedTimestamp"]
            if contact["AttributesData"] is not None:
                out["AttributesData"] = contact["AttributesData"]
        return out

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        if not request.body:
            return {}
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "SerializationException",
                           "Start of structure or map found where not expected.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "SerializationException",
                           "Start of structure or map found where not expected.")
        return body

    @staticmethod
    def _address(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _bad("EmailAddress is required.")
        if len(value) > 320 or not _EMAIL.match(value):
            raise _bad(f"Invalid email address: {value}.")
        return value

    def _list_name(self, request: Request) -> None:
        if request.params["list"] != self.contact_list:
            raise ApiError(404, "NotFoundException",
                           f"List with name {request.params['list']} does not exist.")

    def _preferences(self, body: dict[str, Any]) -> dict[str, str] | None:
        raw = body.get("TopicPreferences")
        if raw is None:
            return None
        if not isinstance(raw, list):
            raise ApiError(400, "SerializationException", "TopicPreferences must be a list.")
        prefs: dict[str, str] = {}
        for pref in raw:
            if not isinstance(pref, dict):
                raise ApiError(400, "SerializationException", "Invalid TopicPreference.")
            name, status = pref.get("TopicName"), pref.get("SubscriptionStatus")
            if not isinstance(name, str) or name not in self.topics:
                raise _bad(f"Topic {name} does not exist in list {self.contact_list}.")
            if status not in ("OPT_IN", "OPT_OUT"):
                raise _bad(f"Invalid SubscriptionStatus: {status}.")
            prefs[name] = status
        return prefs

    @staticmethod
    def _unsubscribe_all(body: dict[str, Any]) -> bool:
        value = body.get("UnsubscribeAll", False)
        if not isinstance(value, bool):
            raise ApiError(400, "SerializationException", "UnsubscribeAll must be a boolean.")
        return value

    @staticmethod
    def _page_size(value: Any) -> int:
        if value is None:
            return DEFAULT_PAGE
        try:
            size = int(value)
        except (TypeError, ValueError):
            raise ApiError(400, "SerializationException", "PageSize must be a number.") from None
        if not 1 <= size <= PAGE_MAX:
            raise _bad(f"PageSize must be between 1 and {PAGE_MAX}.")
        return size

    @staticmethod
    def _token(offset: int, query: str) -> str:
        raw = json.dumps({"o": offset, "q": query}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def _offset(token: str | None, query: str, code: str) -> int:
        if not token:
            return 0
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            offset = int(data["o"])
            same = data["q"] == query
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ApiError(400, code, "The NextToken is invalid.") from None
        if not same or offset < 0:
            raise ApiError(400, code, "The NextToken does not match the request parameters.")
        return offset

    async def _handle(self, request: Request, work: Any) -> Response:
        try:
            result = work()
        except ApiError as exc:
            return self.error(exc.status, exc.code, exc.message)
        return Response(200, result, {"x-amzn-RequestId": str(uuid.uuid4())})

    # suppression list ----------------------------------------------------------
    async def _put_suppressed(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            body = self._body(request)
            address = self._address(body.get("EmailAddress"))
            reason = body.get("Reason")
            if reason not in ("BOUNCE", "COMPLAINT"):
                raise _bad(f"Invalid Reason: {reason}. Valid values: BOUNCE, COMPLAINT.")
            with self._mutex:
                self._suppress(address, reason, self._now())
            return {}
        return await self._handle(request, work)

    async def _get_suppressed(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            key = request.params["email"].lower()
            with self._mutex:
                entry = self.suppressed.get(key)
                if entry is None:
                    raise ApiError(404, "NotFoundException",
                                   "Email address is not on the suppression list.")
                return {"SuppressedDestination": {
                    "EmailAddress": entry["EmailAddress"], "Reason": entry["Reason"],
                    "LastUpdateTime": entry["LastUpdateTime"], "Attributes": {}}}
        return await self._handle(request, work)

    async def _delete_suppressed(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            key = request.params["email"].lower()
            with self._mutex:
                if self.suppressed.pop(key, None) is None:
                    raise ApiError(404, "NotFoundException",
                                   "Email address is not on the suppression list.")
            return {}
        return await self._handle(request, work)

    async def _list_suppressed(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            reasons = request.query.get("Reason", [])
            for reason in reasons:
                if reason not in ("BOUNCE", "COMPLAINT"):
                    raise _bad(f"Invalid Reason: {reason}.")
            start = request.arg("StartDate")
            end = request.arg("EndDate")
            start_ts = _parse_time(start, "StartDate") if start else None
            end_ts = _parse_time(end, "EndDate") if end else None
            size = self._page_size(request.arg("PageSize"))
            query = hashlib.sha256(json.dumps(
                [sorted(reasons), start, end]).encode()).hexdigest()[:16]
            offset = self._offset(request.arg("NextToken"), query, "InvalidNextTokenException")
            with self._mutex:
                matching = [
                    dict(entry) for _key, entry in sorted(self.suppressed.items())
                    if (not reasons or entry["Reason"] in reasons)
                    and (start_ts is None or entry["LastUpdateTime"] >= start_ts)
                    and (end_ts is None or entry["LastUpdateTime"] <= end_ts)
                ]
            window = matching[offset:offset + size]
            out: dict[str, Any] = {"SuppressedDestinationSummaries": [
                {"EmailAddress": e["EmailAddress"], "Reason": e["Reason"],
                 "LastUpdateTime": e["LastUpdateTime"]} for e in window]}
            if offset + size < len(matching):
                out["NextToken"] = self._token(offset + size, query)
            return out
        return await self._handle(request, work)

    # contacts ------------------------------------------------------------------
    async def _create_contact(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            self._list_name(request)
            body = self._body(request)
            address = self._address(body.get("EmailAddress"))
            prefs = self._preferences(body) or {}
            unsubscribe_all = self._unsubscribe_all(body)
            attributes = body.get("AttributesData")
            with self._mutex:
                key = address.lower()
                if key in self.contacts:
                    raise ApiError(400, "AlreadyExistsException",
                                   f"Contact already exists in list {self.contact_list}.")
                contact = self._new_contact(address, self._now())
                contact["TopicPreferences"] = prefs
                contact["UnsubscribeAll"] = unsubscribe_all
                contact["AttributesData"] = attributes
                self.contacts[key] = contact
                self.deleted.discard(key)
            return {}
        return await self._handle(request, work)

    async def _get_contact(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            self._list_name(request)
            with self._mutex:
                contact = self.contacts.get(request.params["email"].lower())
                if contact is None:
                    raise ApiError(404, "NotFoundException",
                                   f"Contact does not exist in list {self.contact_list}.")
                return self._contact_out(contact, full=True)
        return await self._handle(request, work)

    async def _update_contact(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            self._list_name(request)
            body = self._body(request)
            self._address(request.params["email"])
            prefs = self._preferences(body)
            unsubscribe_all = self._unsubscribe_all(body)
            with self._mutex:
                contact = self.contacts.get(request.params["email"].lower())
                if contact is None:
                    raise ApiError(404, "NotFoundException",
                                   f"Contact does not exist in list {self.contact_list}.")
                # Documented: the given preferences replace all existing ones.
                contact["TopicPreferences"] = prefs or {}
                contact["UnsubscribeAll"] = unsubscribe_all
                contact["AttributesData"] = body.get("AttributesData")
                contact["LastUpdatedTimestamp"] = self._now()
            return {}
        return await self._handle(request, work)

    async def _delete_contact(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            self._list_name(request)
            key = request.params["email"].lower()
            with self._mutex:
                if self.contacts.pop(key, None) is None:
                    raise ApiError(404, "NotFoundException",
                                   f"Contact does not exist in list {self.contact_list}.")
                self.deleted.add(key)
            return {}
        return await self._handle(request, work)

    async def _list_contacts(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            self._list_name(request)
            body = self._body(request)
            size = self._page_size(body.get("PageSize"))
            flt = body.get("Filter") or {}
            if not isinstance(flt, dict):
                raise ApiError(400, "SerializationException", "Filter must be a structure.")
            status = flt.get("FilteredStatus")
            if status is not None and status not in ("OPT_IN", "OPT_OUT"):
                raise _bad(f"Invalid FilteredStatus: {status}.")
            topic_filter = flt.get("TopicFilter") or {}
            topic = topic_filter.get("TopicName")
            if topic is not None and topic not in self.topics:
                raise _bad(f"Topic {topic} does not exist in list {self.contact_list}.")
            use_default = bool(topic_filter.get("UseDefaultIfPreferenceUnavailable", False))
            query = hashlib.sha256(json.dumps(flt, sort_keys=True).encode()).hexdigest()[:16]
            offset = self._offset(body.get("NextToken"), query, "BadRequestException")
            with self._mutex:
                everyone = list(self.contacts.values())
                window = everyone[offset:offset + size]
                chosen = [self._contact_out(c, full=False) for c in window
                          if self._matches(c, status, topic, use_default)]
            out: dict[str, Any] = {"Contacts": chosen}
            if offset + size < len(everyone):
                out["NextToken"] = self._token(offset + size, query)
            return out
        return await self._handle(request, work)

    def _matches(self, contact: dict[str, Any], status: str | None, topic: str | None,
                 use_default: bool) -> bool:
        if status is None:
            return True
        if topic is None:
            everything = bool(contact["UnsubscribeAll"])
            opted_out = everything or "OPT_OUT" in contact["TopicPreferences"].values()
            return opted_out if status == "OPT_OUT" else not everything
        current = contact["TopicPreferences"].get(topic)
        if current is None and use_default:
            current = self.topics[topic]
        if contact["UnsubscribeAll"]:
            current = "OPT_OUT"
        return bool(current == status)
