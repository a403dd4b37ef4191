"""A local Mailgun (v3 API) for one sending domain: its suppression lists and events.

Endpoints (as documented):

- ``POST /v3/{domain}/unsubscribes|complaints|bounces``: a JSON array of up to 1000
  records (or one record as a form); each list holds one record per address and a
  second insert updates it (unsubscribe tags are merged). An invalid record fails the
  whole batch with 400 ``{"message": ...}`` and changes nothing.
- ``DELETE /v3/{domain}/unsubscribes/{address}[?tag=]``: removes one tag (``*`` is the
  domain-wide one) or, without ``tag``, the whole record; 404 when it is not there.
- ``GET /v3/{domain}/unsubscribes/{address}``: the record ``{"address", "tags",
  "created_at"}``; 404 ``{"message": "Address not found in unsubscribers table"}``.
- ``GET /v3/{domain}/events`` (``begin``, ``end``, ``ascending``, ``limit`` <= 300,
  ``event`` filter with ``OR``) and the opaque next-page URLs it hands out
  (``GET /v3/{domain}/events/{page}``): requesting the same next URL later returns
  events written since, as Mailgun does.

Auth is HTTP Basic ``api:<key>`` (401 ``Forbidden`` otherwise); 429s carry
``Retry-After`` and ``X-RateLimit-*`` headers and a ``{"message"}`` body. Adding to
the lists through the API writes no events (only recipients do, via
:meth:`MailgunEmulator.tool_opt_out` or :meth:`MailgunEmulator.add_event`).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from tests.emulators.base import Emulator, Faults, Request, Response

MAX_RECORDS = 1000
MAX_EVENTS_PAGE = 300
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_LISTS = ("unsubscribes", "complaints", "bounces")


def _now_text() -> str:
    return format_datetime(datetime.now(UTC), usegmt=True)


@dataclass
class _Event:
    seq: int
    timestamp: float
    data: dict[str, Any] = field(default_factory=dict)


class MailgunEmulator(Emulator):
    name = "mailgun"
    max_in_flight = 4
    """Mailgun documents no concurrency limit; the emulator holds the connector to its own."""

    def __init__(self, api_key: str, domain: str, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.api_key = api_key
        self.domain = domain
        self.lists: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in _LISTS}
        """list name -> lower-cased address -> the record as Mailgun returns it."""
        self.events: list[_Event] = []
        self._seq = itertools.count(1)
        d = r"/v3/(?P<domain>[^/]+)"
        for table in _LISTS:
            self.route("POST", rf"{d}/(?P<table>{table})", f"add_{table}", self._add)
        self.route("DELETE", rf"{d}/unsubscribes/(?P<address>.+)", "delete_unsubscribe",
                   self._delete_unsubscribe)
        self.route("GET", rf"{d}/unsubscribes/(?P<address>.+)", "get_unsubscribe",
                   self._get_unsubscribe)
        self.route("GET", rf"{d}/events", "events", self._events)
        self.route("GET", rf"{d}/events/(?P<page>[A-Za-z0-9_=-]+)", "events", self._next_page)

    # the toolkit's hooks ------------------------------------------------------------
    def authorised(self, request: Request) -> bool:
        return request.basic_auth() == ("api", self.api_key)

    def unauthorised(self) -> Response:
        return Response(401, b"Forbidden", content_type="text/plain")

    def rate_limited(self, retry_after_s: float) -> Response:
        reset = math.ceil(time.time() + retry_after_s)
        return Response(429, {"message": "Too many requests"}, {
            "Retry-After": f"{retry_after_s:g}",
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset),
        })

    def server_error(self) -> Response:
        return Response(500, {"message": "Internal Server Error"})

    def not_found(self) -> Response:
        return Response(404, b"404 page not found", content_type="text/plain")

    def state(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            **{name: sorted(self.lists[name].values(), key=lambda r: r["address"].lower())
               for name in _LISTS},
            "events": len(self.events),
        }

    def view(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for address, record in self.lists["unsubscribes"].items():
            for tag in record["tags"]:
                out.setdefault(address, set()).add("global" if tag == "*" else f"topic:{tag}")
        for address in self.lists["complaints"]:
            out.setdefault(address, set()).add("complaint")
        for address in self.lists["bounces"]:
            out.setdefault(address, set()).add("bounce")
        return out

    def tool_opt_out(self, address: str, kind: str, topic: str | None = None) -> None:
        self.tool_opt_out_at(address, kind, topic, time.time())

    # steering for tests -------------------------------------------------------------
    def tool_opt_out_at(self, address: str, kind: str, topic: str | None,
                        timestamp: float, *, message_tags: list[str] | None = None) -> None:
        """An opt-out inside Mailgun at ``timestamp``; one in the past is an event that
        reached the event store late (Mailgun documents that this happens).

        An unsubscribe with ``topic`` is a click on ``%tag_unsubscribe_url%`` in a
        message tagged ``topic``; without, a click on ``%unsubscribe_url%`` (everything)
        in a message tagged ``message_tags`` (none by default): the event reports the
        message's tags either way, only the unsubscribe record tells them apart."""
        key = address.lower()
        created = format_datetime(datetime.fromtimestamp(timestamp, UTC), usegmt=True)
        if kind == "unsubscribe":
            tag = topic or "*"
            record = self.lists["unsubscribes"].setdefault(
                key, {"address": address, "tags": [], "created_at": created})
            if tag not in record["tags"]:
                record["tags"].append(tag)
            tags = [topic] if topic else list(message_tags or [])
            self.add_event("unsubscribed", address, timestamp, tags=tags)
        elif kind == "complaint":
            self.lists["complaints"][key] = {"address": address, "created_at": created}
            self.add_event("complained", address, timestamp)
        elif kind == "bounce":
            self.lists["bounces"][key] = {"address": address, "code": "550",
                                          "error": "5.1.1 No such mailbox",
                                          "created_at": created}
            self.add_event("failed", address, timestamp, severity="permanent", reason="bounce",
                           **{"delivery-status": {"code": 550,
                                                  "message": "5.1.1 No such mailbox",
                                                  "attempt-no": 1}})
        else:
            raise ValueError(f"unknown opt-out kind {kind!r}")

    def add_event(self, event: str, recipient: str, timestamp: float | None = None,
                  **fields: Any) -> dict[str, Any]:
        """Log any event (e.g. a temporary failure) as Mailgun would, without touching
        the suppression lists."""
        ts = time.time() if timestamp is None else timestamp
        data: dict[str, Any] = {
            "event": event,
            "id": secrets.token_urlsafe(16),
            "timestamp": ts,
            "log-level": "error" if event == "failed" else "info",
            "recipient": recipient,
            "recipient-domain": recipient.rpartition("@")[2],
            "tags": [],
            "campaigns": [],
            "user-variables": {},
            "flags": {"is-authenticated": True, "is-test-mode": False},
            "message": {"headers": {"message-id": f"{secrets.token_hex(8)}@{self.domain}",
                                    "from": f"news@{self.domain}", "subject": "News"},
                        "size": 1024},
        }
        data.update(fields)
        self.events.append(_Event(next(self._seq), ts, data))
        return data

    # handlers -------------------------------------------------------------------------
    def _domain_error(self, request: Request) -> Response | None:
        if request.params["domain"] != self.domain:
            return Response(404, {"message": f"Domain not found: {request.params['domain']}"})
        return None

    async def _add(self, request: Request) -> Response:
        wrong = self._domain_error(request)
        if wrong is not None:
            return wrong
        table = request.params["table"]
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                body = request.json()
            except ValueError:
                return Response(400, {"message": "Invalid JSON in request body"})
            if isinstance(body, dict):
                body = [body]
            if not isinstance(body, list) or not body:
                return Response(400, {"message": "Request body should be a non-empty "
                                                 "JSON array of records"})
            if len(body) > MAX_RECORDS:
                return Response(400, {"message": f"Batch is too large: up to {MAX_RECORDS} "
                                                 "records are allowed"})
            records = body
        else:
            form = request.form()
            one: dict[str, Any] = {k: v[0] for k, v in form.items()}
            if "tag" in one:
                one["tags"] = [one.pop("tag")]
            records = [one]
        cleaned: list[dict[str, Any]] = []
        for record in records:
            problem, value = _clean(table, record)
            if problem:
                return Response(400, {"message": problem})
            cleaned.append(value)
        async with self.lock:
            for record in cleaned:
                key = record["address"].lower()
                if table == "unsubscribes" and key in self.lists[table]:
                    tags = self.lists[table][key]["tags"]
                    tags.extend(t for t in record["tags"] if t not in tags)
                    self.lists[table][key]["created_at"] = record["created_at"]
                else:
                    self.lists[table][key] = record
        if len(cleaned) == 1 and not content_type.startswith("application/json"):
            return Response(200, {"message": f"Address has been added to the {table} table",
                                  "address": cleaned[0]["address"]})
        what = "complaint addresses" if table == "complaints" else "addresses"
        return Response(200, {"message": f"{len(cleaned)} {what} have been added to the "
                                         f"{table} table"})

    async def _delete_unsubscribe(self, request: Request) -> Response:
        wrong = self._domain_error(request)
        if wrong is not None:
            return wrong
        key = request.params["address"].lower()  # the server decoded the path
        tag = request.arg("tag")
        async with self.lock:
            record = self.lists["unsubscribes"].get(key)
            if record is None or (tag is not None and tag not in record["tags"]):
                return Response(404, {"message": "Address not found in unsubscribers table"})
            if tag is None:
                del self.lists["unsubscribes"][key]
            else:
                record["tags"].remove(tag)
                if not record["tags"]:
                    del self.lists["unsubscribes"][key]
        return Response(200, {"message": "Unsubscribe event has been removed",
                              "address": record["address"]})

    async def _get_unsubscribe(self, request: Request) -> Response:
        wrong = self._domain_error(request)
        if wrong is not None:
            return wrong
        record = self.lists["unsubscribes"].get(request.params["address"].lower())
        if record is None:
            return Response(404, {"message": "Address not found in unsubscribers table"})
        return Response(200, {"address": record["address"], "tags": list(record["tags"]),
                              "created_at": record["created_at"]})

    async def _events(self, request: Request) -> Response:
        wrong = self._domain_error(request)
        if wrong is not None:
            return wrong
        try:
            begin = _time_arg(request.arg("begin"), time.time())
            end_text = request.arg("end")
            end = _time_arg(end_text, 0.0) if end_text is not None else None
            limit = int(request.arg("limit", "100") or "100")
        except ValueError as exc:
            return Response(400, {"message": str(exc)})
        ascending_arg = request.arg("ascending")
        if ascending_arg not in (None, "yes", "no"):
            return Response(400, {"message": "ascending: expected yes or no"})
        ascending = ascending_arg == "yes" if ascending_arg else (end is not None and end >= begin)
        if end is not None and (end >= begin) != ascending and end != begin:
            return Response(400, {"message": f"Inconsistent range: begin={begin}, end={end}, "
                                             f"ascending={ascending}"})
        if not 1 <= limit <= MAX_EVENTS_PAGE:
            return Response(400, {"message": f"limit: must be between 1 and {MAX_EVENTS_PAGE}"})
        try:
            kinds = _event_filter(request.arg("event"))
        except ValueError as exc:
            return Response(400, {"message": str(exc)})
        query = {"b": begin, "e": end, "a": ascending, "l": limit,
                 "k": sorted(kinds) if kinds else None, "after": None}
        return self._page(request, query)

    async def _next_page(self, request: Request) -> Response:
        wrong = self._domain_error(request)
        if wrong is not None:
            return wrong
        try:
            query = json.loads(base64.urlsafe_b64decode(request.params["page"]))
        except (ValueError, binascii.Error):
            return Response(400, {"message": "Invalid page URL"})
        return self._page(request, query)

    def _page(self, request: Request, query: dict[str, Any]) -> Response:
        begin, end, ascending = query["b"], query["e"], query["a"]
        kinds = set(query["k"]) if query["k"] else None
        after = tuple(query["after"]) if query["after"] else None

        def wanted(e: _Event) -> bool:
            if kinds is not None and e.data["event"] not in kinds:
                return False
            if ascending:
                return e.timestamp >= begin and (end is None or e.timestamp < end)
            return e.timestamp <= begin and (end is None or e.timestamp > end)

        found = sorted((e for e in self.events if wanted(e)),
                       key=lambda e: (e.timestamp, e.seq), reverse=not ascending)
        if after is not None:
            found = [e for e in found
                     if ((e.timestamp, e.seq) > after) == ascending and (e.timestamp, e.seq)
                     != after]
        page = found[:query["l"]]
        last = (page[-1].timestamp, page[-1].seq) if page else query["after"]
        host = request.headers.get("host", "localhost")
        base = f"http://{host}/v3/{self.domain}/events/"

        def link(after: Any) -> str:
            token = json.dumps({**query, "after": after}, separators=(",", ":"))
            return base + base64.urlsafe_b64encode(token.encode()).decode("ascii")

        return Response(200, {
            "items": [e.data for e in page],
            "paging": {"next": link(last), "previous": link(query["after"]),
                       "first": link(None), "last": link(last)},
        })


def _clean(table: str, record: Any) -> tuple[str, dict[str, Any]]:
    """(problem, record as stored): Mailgun's defaults filled in."""
    if not isinstance(record, dict):
        return "Each record should be a JSON object", {}
    address = record.get("address")
    if not isinstance(address, str) or not address:
        return "'address' parameter is missing", {}
    if not _ADDRESS.fullmatch(address):
        return "'address' parameter is not a valid address", {}
    created = record.get("created_at")
    if created is None:
        created = _now_text()
    else:
        try:
            created = format_datetime(parsedate_to_datetime(str(created)), usegmt=True)
        except (TypeError, ValueError):
            return "'created_at' parameter is not a valid RFC 2822 date", {}
    value: dict[str, Any] = {"address": address, "created_at": created}
    if table == "unsubscribes":
        tags = record.get("tags", ["*"])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            return "'tags' parameter should be a list of tags", {}
        value["tags"] = list(dict.fromkeys(tags)) or ["*"]
    elif table == "bounces":
        value["code"] = str(record.get("code", "550"))
        value["error"] = str(record.get("error", ""))
    return "", value


def _time_arg(text: str | None, default: float) -> float:
    if text is None or text == "":
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        raise ValueError(f"Invalid time value: {text!r}") from None


def _event_filter(text: str | None) -> set[str] | None:
    """The event types of an ``event`` filter (``a OR b``); None: no filter."""
    if not text:
        return None
    parts = [p.strip() for p in text.split(" OR ")]
    if not all(re.fullmatch(r"[a-z_]+", p) for p in parts):
        raise ValueError(f"event: invalid filter expression {text!r}")
    return set(parts)
