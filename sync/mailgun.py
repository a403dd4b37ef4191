"""Mailgun (v3 API): the sending domain's suppression lists and its events log.

Mailgun keeps three suppression lists per sending domain (``settings.domain``), and
no contact records for sending:

- **unsubscribes** ``POST /v3/{domain}/unsubscribes``: a JSON array of up to 1000
  ``{"address", "tags", "created_at"}``; ``tags: ["*"]`` stops all mail from the
  domain, ``[tag]`` only messages with that tag (our topic -> tag via ``topic_map``;
  Mailgun tags are case-insensitive). Adding an address that is there already
  updates the record, so a re-sent call is harmless.
  ``DELETE /v3/{domain}/unsubscribes/{address}?tag=...`` lifts one tag (``*`` being
  the domain-wide one); a 404 means it is gone already.
- **complaints** / **bounces**: the same kind of batch insert (``bounces`` records
  carry an SMTP ``code`` and ``error``). Complaints and hard bounces are never lifted.
- There is nothing to delete for an erasure: no call.

Pull reads ``GET /v3/{domain}/events`` (``ascending=yes``, at most 300 a page,
``event=unsubscribed OR complained OR failed``) and follows ``paging.next`` until a
page is empty. Mailgun documents that events reach its event store out of order
and that only events older than a threshold age (half an hour) are final, so the
position we store is ``t``, a time before which everything has been read and is
settled (never later than half an hour before the run), plus the ids of the
opt-outs already returned after ``t``: the next pull re-reads from ``t``, picks up
late arrivals and skips what it returned before.

Webhooks: Mailgun signs each call (HMAC-SHA256 of timestamp + token with the
webhook signing key, in the JSON body); :func:`parse_webhook` checks it.

Unsubscribes and their scope. An ``unsubscribed`` event carries the message's
``tags``, but it does not say which link was clicked: ``%unsubscribe_url%`` leaves
everything from the domain, ``%tag_unsubscribe_url%`` only the message's tags
(https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages), and an
"unsubscribe from all" click in a tagged message reports those tags too. When in doubt
we do not send, so an unsubscribe is recorded as the WIDER scope (everything) unless
Mailgun's unsubscribe record proves the narrower one: the pull looks the address up
(``GET /v3/{domain}/unsubscribes/{address}``, whose ``tags`` are "any tags present on
the message the user clicked Unsubscribe on", ``*`` meaning all mail from the domain:
https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/unsubscribe/get-v3--domainid--unsubscribes--address-)
and records topic opt-outs only when that record has no ``*``, lists the event's tags,
and every one of them maps to a topic (``topic_map``). No record, a ``*``, a tag we do
not map, or a webhook (which has no record to look at): an opt-out from everything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import OptOutKind, RemoteOptOut
from sync.base import HttpConnector, chunks
from sync.connector import Call, PullPage, PushItem, Rejection, SyncFailed, WebhookRejected

SIGNED = True
"""Mailgun signs its webhook calls: no ``?key=`` in the webhook URL."""

MAX_BATCH = 1000
"""Records per batch insert into a suppression list (documented maximum)."""
PAGE_LIMIT = 300
"""Events per page of the events API (documented maximum)."""
SETTLE_S = 1800.0
"""Mailgun's threshold age: events older than this are in the event store for good."""
RETENTION = timedelta(days=30)
"""The longest Mailgun keeps events (paid plans): where a first pull starts."""
WEBHOOK_MAX_AGE_S = 600.0
"""A signed webhook call whose timestamp is further than this from now is a replay."""

EVENT_FILTER = "unsubscribed OR complained OR failed"
NOT_BOUNCES = frozenset({
    "suppress-bounce", "suppress-unsubscribe", "suppress-complaint",  # dropped: on a list
    "old",  # retried for hours without success: not a verdict on the mailbox
    "espblock",  # the receiving provider refused the content, not the address
})
"""Reasons of permanent failures that are not hard bounces."""
BOUNCE_CODE = "550"
BOUNCE_ERROR = "Hard bounce recorded in the central suppression list"

_ADDRESSISH = re.compile(r"[^\s'\"<>(),;:]+@[^\s'\"<>(),;:]+")


class MailgunConnector(HttpConnector):
    """Keeps one Mailgun sending domain's suppression lists in step (see module doc)."""

    kind = "mailgun"
    max_batch = MAX_BATCH
    max_concurrency = 4
    """Mailgun documents no concurrency limit for these endpoints: a modest one."""
    settle_s = SETTLE_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.settings.domain:
            raise ValueError(f"connector {self.name}: a Mailgun connector needs a domain")
        self.domain = self.settings.domain
        self._domain_path = f"/v3/{quote(self.domain, safe='')}"
        token = base64.b64encode(f"api:{self.api_key}".encode()).decode("ascii")
        self._auth = {"Authorization": f"Basic {token}"}
        self._tag_topic = {tag.lower(): topic for tag, topic in self.topic_of.items()}

    # push -------------------------------------------------------------------
    def plan(self, items: Sequence[PushItem]) -> list[Call]:
        groups: dict[tuple[str, str, str], list[PushItem]] = {}
        for item in items:
            key = self._group(item)
            if key is not None:
                groups.setdefault(key, []).append(item)
        calls: list[Call] = []
        for (action, table, tag), members in groups.items():
            if action == "lift":
                calls.extend(self._lift_call(item, tag) for item in members)
                continue
            for part in chunks(members, self.max_batch):
                calls.append(Call(
                    method="POST",
                    path=f"{self._domain_path}/{table}",
                    items=tuple(part),
                    json=[_record(table, item, tag) for item in part],
                    note=_suppress_note(table, tag),
                ))
        return calls

    def _group(self, item: PushItem) -> tuple[str, str, str] | None:
        """(action, list, tag) of the call an item goes in; None: nothing to send."""
        if item.action == "delete":
            return None  # Mailgun keeps no contacts for sending: nothing to erase
        if item.action == "suppress":
            if item.reason == "complaint":
                return "suppress", "complaints", ""
            if item.reason in ("hard_bounce", "soft_bounce"):
                return "suppress", "bounces", ""
            return "suppress", "unsubscribes", self.tool_topic(item) or "*"
        if item.reason in ("complaint", "hard_bounce", "soft_bounce"):
            return None  # never lifted
        tag = self.tool_topic(item)
        if item.topic is not None and tag is None:
            # An unmapped topic was pushed as the domain-wide "*": lifting that here
            # could lift more than this topic, so the address stays unsubscribed.
            return None
        return "lift", "unsubscribes", tag or "*"

    def _lift_call(self, item: PushItem, tag: str) -> Call:
        scope = "the domain-wide unsubscribe" if tag == "*" else f"the unsubscribe from tag {tag!r}"
        return Call(
            method="DELETE",
            path=f"{self._domain_path}/unsubscribes/{{address}}",
            items=(item,),
            params={"tag": tag},
            note=f"lift {scope}",
        )

    async def send(self, call: Call) -> list[Rejection]:
        if call.method == "DELETE":
            return await self._send_lift(call)
        records = call.json if isinstance(call.json, list) else []
        if len(records) != len(call.items):
            raise SyncFailed(f"{self.name}: {call.method} {call.path}: records do not match "
                             "the call's items")
        return await self._insert(call, list(records), list(call.items))

    async def _insert(self, call: Call, records: list[Any],
                      items: list[PushItem]) -> list[Rejection]:
        """POST a batch; a 400 about an address is narrowed down by halving the batch
        (inserts are upserts, so the halves re-sending good records is harmless)."""
        response = await self.http.request("POST", self.url(call.path), json=records,
                                           headers=self._auth)
        if response.is_success:
            return []
        problem = _problem(response, [i.address for i in items])
        if response.status_code == 400 and "address" in problem.lower():
            if len(items) == 1:
                return [Rejection(items[0], problem)]
            half = len(items) // 2
            first = await self._insert(call, records[:half], items[:half])
            return first + await self._insert(call, records[half:], items[half:])
        raise self._failed(call, response.status_code, problem)

    async def _send_lift(self, call: Call) -> list[Rejection]:
        item = call.items[0]
        path = call.path.replace("{address}", quote(item.address, safe=""))
        response = await self.http.request("DELETE", self.url(path), params=call.params,
                                           headers=self._auth)
        if response.is_success or response.status_code == 404:
            return []  # 404: not on the list (any more): already lifted
        problem = _problem(response, [item.address])
        if response.status_code == 400 and "address" in problem.lower():
            return [Rejection(item, problem)]
        raise self._failed(call, response.status_code, problem)

    def _failed(self, call: Call, status: int, problem: str) -> SyncFailed:
        return SyncFailed(f"{self.name}: {call.method} {call.path}: HTTP {status}: {problem}")

    # pull -------------------------------------------------------------------
    async def pull(self, position: str, until: datetime) -> AsyncIterator[PullPage]:
        until_s = _epoch(until)
        settled = min(until_s, time.time()) - self.settle_s
        cursor = _Cursor.load(position)
        start = cursor.t if cursor.t is not None else _epoch(until - RETENTION)
        begin, end = math.floor(start), math.floor(until_s) + 1
        if begin >= end:
            return
        url = self.url(f"{self._domain_path}/events")
        params: dict[str, Any] | None = {
            "begin": str(begin), "end": str(end), "ascending": "yes",
            "limit": str(PAGE_LIMIT), "event": EVENT_FILTER,
        }
        last = position
        while True:
            response = await self.http.request("GET", url, params=params, headers=self._auth)
            if not response.is_success:
                raise SyncFailed(f"{self.name}: GET {self._domain_path}/events: HTTP "
                                 f"{response.status_code}: {_problem(response, [])}")
            items, next_url = self._page(response)
            if not items:
                break
            opt_outs: list[RemoteOptOut] = []
            records: dict[str, list[str] | None] = {}
            for event in items:
                ts = _timestamp(event)
                if ts is None or ts > until_s or (cursor.t is not None and ts < cursor.t):
                    continue  # after this run's end, or settled and read before
                event_id = _event_id(event)
                if event_id in cursor.seen:
                    continue
                proof: list[str] | None = None
                if event.get("event") == "unsubscribed" and _tags(event):
                    proof = await self._unsubscribe_tags(event.get("recipient"), records)
                found = opt_outs_of(event, self._tag_topic, proof)
                if found:
                    cursor.seen[event_id] = ts
                    opt_outs.extend(found)
            page_last = _timestamp(items[-1])
            if page_last is not None:
                cursor.advance(min(page_last, settled), start)
            last = cursor.dump()
            yield PullPage(opt_outs, last)
            if next_url is None:
                break
            url, params = self._same_host(next_url), None
        cursor.advance(settled, start)  # read to the end: everything settled is in
        if cursor.dump() != last:
            yield PullPage([], cursor.dump())

    async def _unsubscribe_tags(self, address: Any, seen: dict[str, list[str] | None]
                                ) -> list[str] | None:
        """The ``tags`` of the address's record in the unsubscribes list (None: no
        record, or not a list of tags), looked up once per address and page."""
        if not isinstance(address, str) or not address:
            return None
        key = address.lower()
        if key in seen:
            return seen[key]
        path = f"{self._domain_path}/unsubscribes/{quote(address, safe='')}"
        response = await self.http.request("GET", self.url(path), headers=self._auth)
        tags: list[str] | None = None
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                body = None
            found = body.get("tags") if isinstance(body, dict) else None
            if isinstance(found, list) and all(isinstance(t, str) for t in found):
                tags = list(found)
        elif response.status_code != 404:  # 404: not (or no longer) on the list
            raise SyncFailed(f"{self.name}: GET {self._domain_path}/unsubscribes/{{address}}: "
                             f"HTTP {response.status_code}: {_problem(response, [address])}")
        seen[key] = tags
        return tags

    def _page(self, response: httpx.Response) -> tuple[list[dict[str, Any]], str | None]:
        try:
            body = response.json()
        except ValueError:
            body = None
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise SyncFailed(f"{self.name}: GET {self._domain_path}/events: the answer is "
                             "not an events page")
        paging = body.get("paging") if isinstance(body, dict) else None
        next_url = paging.get("next") if isinstance(paging, dict) else None
        return items, next_url if isinstance(next_url, str) and next_url else None

    def _same_host(self, url: str) -> str:
        """The next-page URL, on our configured host (the key goes nowhere else)."""
        base, found = urlsplit(self.base_url), urlsplit(url)
        return urlunsplit((base.scheme, base.netloc, found.path, found.query, ""))


class _Cursor:
    """The pull position: ``t`` (everything before it is read and settled) and the
    ids (with their times) of opt-outs already returned at or after ``t``."""

    def __init__(self, t: float | None, seen: dict[str, float]) -> None:
        self.t = t
        self.seen = seen

    @classmethod
    def load(cls, position: str) -> _Cursor:
        """'' (or a position this code did not write): from the beginning."""
        try:
            data = json.loads(position) if position else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("t"), int | float):
            return cls(None, {})
        try:
            seen = {str(k): float(v) for k, v in data.get("seen") or []}
        except (TypeError, ValueError):
            seen = {}  # re-reading from t: overlap only, recorded idempotently
        return cls(float(data["t"]), seen)

    def advance(self, to: float, floor: float) -> None:
        self.t = max(self.t if self.t is not None else floor, to)
        self.seen = {k: ts for k, ts in self.seen.items() if ts >= self.t}

    def dump(self) -> str:
        seen = sorted(self.seen.items(), key=lambda kv: (kv[1], kv[0]))
        return json.dumps({"t": self.t, "seen": [[k, ts] for k, ts in seen]},
                          separators=(",", ":"))


# one event -> our opt-outs ------------------------------------------------------
def opt_outs_of(event: Mapping[str, Any], tag_topic: Mapping[str, str],
                unsubscribe_tags: Sequence[str] | None = None) -> list[RemoteOptOut]:
    """The opt-outs a Mailgun event means (``tag_topic``: lower-cased tag -> our topic):
    ``unsubscribed`` (domain-wide unless ``unsubscribe_tags``, the tags of the address's
    unsubscribe record, prove a tag-only one: see :func:`unsubscribe_topics`),
    ``complained``, and ``failed`` with ``severity: permanent`` that is a real bounce
    (not a drop because the address was on a list already, not an expired retry, not a
    content block)."""
    kind: OptOutKind
    name = event.get("event")
    if name == "unsubscribed":
        kind = "unsubscribe"
    elif name == "complained":
        kind = "complaint"
    elif name == "failed" and event.get("severity") == "permanent" \
            and event.get("reason") not in NOT_BOUNCES:
        kind = "hard_bounce"
    else:
        return []
    address = event.get("recipient")
    if not isinstance(address, str) or not address:
        return []
    ts = _timestamp(event)
    at = datetime.fromtimestamp(ts, UTC) if ts is not None else None
    record = flatten(event)
    if kind == "hard_bounce":
        status = record.get("delivery-status.code")
        if status:
            record["status"] = status
    topics: list[str | None] = [None]
    if kind == "unsubscribe":
        topics = unsubscribe_topics(_tags(event), unsubscribe_tags, tag_topic)
    return [RemoteOptOut(address=address, kind=kind, topic=topic, at=at, record=record)
            for topic in topics]


def unsubscribe_topics(event_tags: Sequence[str], record_tags: Sequence[str] | None,
                       tag_topic: Mapping[str, str]) -> list[str | None]:
    """Our topics an ``unsubscribed`` event proves, or ``[None]``: everything.

    The event alone never narrows (an "unsubscribe from all" click in a tagged message
    reports the tags too). The unsubscribe record does, when it has no ``*`` and holds
    the event's tags, each mapped to one of our topics; anything else is in doubt, and
    in doubt the person left everything."""
    if not record_tags:
        return [None]
    held = {t.lower() for t in record_tags}
    if "*" in held:
        return [None]
    tags = list(dict.fromkeys(t.lower() for t in event_tags if t.lower() in held))
    topics = [tag_topic.get(t) for t in tags]
    if not topics or any(t is None for t in topics):
        return [None]
    return list(dict.fromkeys(topics))


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested JSON object as ``{"a.b": "text"}`` (lists of plain values comma-joined)."""
    out: dict[str, str] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            out.update(flatten(item, name + "."))
        elif isinstance(item, list) and all(_plain(x) for x in item):
            out[name] = ", ".join(_text(x) for x in item)
        elif _plain(item):
            out[name] = _text(item)
        else:
            out[name] = json.dumps(item, sort_keys=True, separators=(",", ":"))
    return out


# webhooks -----------------------------------------------------------------------
def parse_webhook(
    settings: ConnectorSettings,
    key: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    now: float,
) -> list[RemoteOptOut]:
    """The opt-outs in one Mailgun webhook call (JSON: ``signature`` + ``event-data``).

    401: no signing key, a missing or wrong signature (``parent-signature``, sent for
    subaccounts, is accepted too), or a timestamp more than 10 minutes from ``now``;
    400: not Mailgun's JSON format. Other events than unsubscribes, complaints and
    hard bounces give []. An unsubscribe is always domain-wide here: the call has no
    unsubscribe record to prove a tag-only one (the next pull does not narrow it
    either: an opt-out from everything already covers every topic)."""
    del headers, query  # Mailgun puts everything in the body
    if not key:
        raise WebhookRejected(401, "no webhook signing key configured")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "the body is not JSON (expected Mailgun's "
                                   "signature + event-data)") from None
    if not isinstance(data, dict) or "event-data" not in data:
        raise WebhookRejected(400, "the body is not a Mailgun webhook (no event-data)")
    signature = data.get("signature")
    if not isinstance(signature, dict):
        raise WebhookRejected(401, "missing signature")
    timestamp, token = signature.get("timestamp"), signature.get("token")
    if not isinstance(timestamp, str | int) or isinstance(timestamp, bool) \
            or not isinstance(token, str) or not token:
        raise WebhookRejected(401, "missing signature timestamp or token")
    expected = hmac.new(key.encode("utf-8"), f"{timestamp}{token}".encode(),
                        hashlib.sha256).hexdigest()
    given = [signature.get(k) for k in ("signature", "parent-signature")]
    if not any(isinstance(g, str) and hmac.compare_digest(g.lower().encode("utf-8"),
                                                          expected.encode("ascii"))
               for g in given):
        raise WebhookRejected(401, "bad signature")
    try:
        signed_at = float(timestamp)
    except ValueError:
        raise WebhookRejected(401, "bad signature timestamp") from None
    if not math.isfinite(signed_at) or abs(now - signed_at) > WEBHOOK_MAX_AGE_S:
        raise WebhookRejected(401, "signature timestamp too far from now (replay?)")
    event = data["event-data"]
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise WebhookRejected(400, "event-data is not a Mailgun event")
    if event["event"] in ("unsubscribed", "complained", "failed") \
            and not isinstance(event.get("recipient"), str):
        raise WebhookRejected(400, "event-data has no recipient")
    tag_topic = {str(tag).lower(): topic for topic, tag in settings.topic_map.items()}
    return opt_outs_of(event, tag_topic)


# helpers --------------------------------------------------------------------------
def _record(table: str, item: PushItem, tag: str) -> dict[str, Any]:
    record: dict[str, Any] = {"address": item.address}
    if table == "unsubscribes":
        record["tags"] = [tag]
    elif table == "bounces":
        record["code"] = BOUNCE_CODE
        record["error"] = BOUNCE_ERROR
    if item.at is not None:
        record["created_at"] = rfc2822(item.at)
    return record


def _suppress_note(table: str, tag: str) -> str:
    if table == "complaints":
        return "add to the complaints list"
    if table == "bounces":
        return "add to the bounces list"
    if tag == "*":
        return "add to the unsubscribes list for all mail from the domain"
    return f"add to the unsubscribes list for tag {tag!r}"


def rfc2822(at: datetime) -> str:
    """Mailgun's date format, e.g. ``Thu, 13 Oct 2011 18:02:00 GMT``."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return format_datetime(at.astimezone(UTC), usegmt=True)


def _problem(response: httpx.Response, addresses: Sequence[str]) -> str:
    """Mailgun's ``message`` (or the start of the body), without any address."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    else:
        text = response.text[:200].strip() or response.reason_phrase
    for address in addresses:
        if address:
            text = re.sub(re.escape(address), "{address}", text, flags=re.IGNORECASE)
    return _ADDRESSISH.sub("{address}", text)


def _epoch(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def _timestamp(event: Mapping[str, Any]) -> float | None:
    value = event.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        ts = float(value)
    except ValueError:
        return None
    return ts if math.isfinite(ts) else None


def _event_id(event: Mapping[str, Any]) -> str:
    value = event.get("id")
    if isinstance(value, str) and value:
        return value
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()
    return "h:" + digest[:24]


def _tags(event: Mapping[str, Any]) -> list[str]:
    tags = event.get("tags")
    return [t for t in tags if isinstance(t, str) and t] if isinstance(tags, list) else []


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
