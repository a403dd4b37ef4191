"""SendGrid (Twilio) v3 API: global and group suppressions, contact erasure, pulls and
the signed Event Webhook.

What goes where (API reference, api.sendgrid.com/v3, ``Authorization: Bearer KEY``):

- **suppress** for everything: ``POST /v3/asm/suppressions/global``
  ``{"recipient_emails": [...]}`` -> 201. For a topic mapped to an unsubscribe group:
  ``POST /v3/asm/groups/{group_id}/suppressions`` (same body; SendGrid puts addresses
  for a deleted or unknown group on the global list). Adding an address that is
  already there changes nothing, so a re-sent call is harmless. SendGrid's bounce and
  spam-report lists cannot be written by API, so complaints and hard bounces become
  global suppressions. The reference gives no maximum for ``recipient_emails``:
  :attr:`SendgridConnector.max_batch` is our own conservative 1000.
- **lift**: ``DELETE /v3/asm/suppressions/global/{email}`` or
  ``DELETE /v3/asm/groups/{group_id}/suppressions/{email}`` (204), one address per
  call; never for complaints or hard bounces; not for a topic that is not mapped
  (its opt-out went out as a global suppression, and lifting that would lift every
  other topic too).
- **delete** (erasure, Marketing Campaigns contacts): ``POST
  /v3/marketing/contacts/search/emails`` ``{"emails": [...]}`` (up to 100; 404 when
  none is a contact) then ``DELETE /v3/marketing/contacts?ids=...`` (202, a job).
- **pull**: ``GET /v3/suppression/unsubscribes``, ``/bounces``, ``/spam_reports``
  with ``start_time``/``end_time`` (unix seconds, both inclusive), ``limit`` (at most
  500) and ``offset``; group unsubscribes from ``GET /v3/asm/suppressions`` (every
  group's suppressions with ``group_id`` and ``created_at``, so only new ones are
  read; the per-group ``GET /v3/asm/groups/{id}/suppressions`` has no dates). Only
  bounces with a permanent (5.x.x) status count.
- **webhook**: the Signed Event Webhook (ECDSA P-256 over timestamp + raw body).

A 400 about the addresses of a batch (``field`` ``recipient_emails`` / ``emails``)
does not say which one: the batch is split in halves until the refused addresses are
alone, and those become :class:`Rejection` s. No address ever goes into a note, a
dry-run path (lift paths carry an ``{email}`` placeholder filled in at send time) or
an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import OptOutKind, RemoteOptOut
from sync.base import HttpConnector
from sync.connector import Call, PullPage, PushItem, Rejection, SyncFailed, WebhookRejected

SIGNED = True
"""SendGrid signs its Event Webhook: no ``?key=`` in the URL."""

GLOBAL_PATH = "/v3/asm/suppressions/global"
GROUP_PATH = "/v3/asm/groups/{group}/suppressions"
SEARCH_PATH = "/v3/marketing/contacts/search/emails"
CONTACTS_PATH = "/v3/marketing/contacts"
GROUP_SUPPRESSIONS_PATH = "/v3/asm/suppressions"
EMAIL_SLOT = "{email}"
"""Placeholder in a lift call's path; :meth:`SendgridConnector.send` fills it in."""

PAGE_SIZE = 500
"""``limit`` maximum of the suppression list endpoints."""
SEARCH_MAX = 100
"""Addresses per ``contacts/search/emails`` request."""
STICKY = frozenset({"complaint", "hard_bounce", "soft_bounce"})
"""Our reasons SendGrid keeps on its global list and we never lift."""
WEBHOOK_TOLERANCE_S = 600
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"

# (source name in the cursor, path, kind); "groups" is read from GROUP_SUPPRESSIONS_PATH.
_LISTS: tuple[tuple[str, str, OptOutKind], ...] = (
    ("unsubscribes", "/v3/suppression/unsubscribes", "unsubscribe"),
    ("bounces", "/v3/suppression/bounces", "hard_bounce"),
    ("spam_reports", "/v3/suppression/spam_reports", "complaint"),
)
_SOURCES = (*(name for name, _, _ in _LISTS), "groups")
_ADDRESS = re.compile(r"[^\s\"'<>,;:()\[\]]*@[^\s\"'<>,;:()\[\]]*")


class SendgridConnector(HttpConnector):
    """Pushes our opt-outs to SendGrid's suppressions and pulls SendGrid's back."""

    kind = "sendgrid"
    max_batch = 1000
    """Addresses per suppression call. SendGrid documents no maximum for
    ``recipient_emails``; 1000 keeps a request small (erasure calls: 100, the
    documented maximum of ``contacts/search/emails``)."""
    max_concurrency = 4
    """SendGrid documents per-endpoint request rates (``X-RateLimit-*`` headers), not a
    concurrency limit: four requests in flight, and the 429s do the pacing."""

    # plan --------------------------------------------------------------------
    def plan(self, items: Sequence[PushItem]) -> list[Call]:
        groups: dict[tuple[str, str | None], list[PushItem]] = {}
        for item in items:
            key = self._key(item)
            if key is not None:
                groups.setdefault(key, []).append(item)
        calls: list[Call] = []
        for (action, group), members in groups.items():
            if action == "suppress":
                calls.extend(self._suppress_calls(group, members))
            elif action == "lift":
                calls.extend(self._lift_calls(group, members))
            else:
                calls.extend(self._delete_calls(members))
        return calls

    def _key(self, item: PushItem) -> tuple[str, str | None] | None:
        """(action, SendGrid group id or None for global); None: nothing to send."""
        if item.action == "delete":
            return "delete", None
        if item.reason in STICKY:
            # Complaints and hard bounces: global (SendGrid's own lists are read-only),
            # and never lifted.
            return None if item.action == "lift" else ("suppress", None)
        group = self.tool_topic(item)
        if item.action == "lift" and item.topic is not None and group is None:
            return None  # pushed as a global suppression: lifting it would lift all
        return item.action, group

    def _suppress_calls(self, group: str | None, items: list[PushItem]) -> list[Call]:
        if group is None:
            path, note = GLOBAL_PATH, "add to the global unsubscribe list"
        else:
            path = GROUP_PATH.format(group=quote(group, safe=""))
            note = f"add to unsubscribe group {group}"
        calls = []
        for batch, addresses in _batches(items, self.max_batch):
            calls.append(Call("POST", path, batch, json={"recipient_emails": addresses},
                              note=note))
        return calls

    def _lift_calls(self, group: str | None, items: list[PushItem]) -> list[Call]:
        if group is None:
            path, note = f"{GLOBAL_PATH}/{EMAIL_SLOT}", "remove from the global unsubscribe list"
        else:
            path = GROUP_PATH.format(group=quote(group, safe="")) + f"/{EMAIL_SLOT}"
            note = f"remove from unsubscribe group {group}"
        return [Call("DELETE", path, batch, note=note) for batch, _ in _batches(items, 1)]

    def _delete_calls(self, items: list[PushItem]) -> list[Call]:
        return [
            Call("POST", SEARCH_PATH, batch, json={"emails": addresses},
                 note="erase Marketing Campaigns contacts (look up ids, then delete)")
            for batch, addresses in _batches(items, SEARCH_MAX)
        ]

    # send --------------------------------------------------------------------
    async def send(self, call: Call) -> list[Rejection]:
        problems: dict[str, str] = {}
        if call.method == "DELETE":
            await self._lift(call, problems)
        elif call.path == SEARCH_PATH:
            await self._erase(_addresses(call.json, "emails"), problems)
        else:
            await self._add(call.path, _addresses(call.json, "recipient_emails"), problems)
        return [Rejection(item, problems[item.address.lower()]) for item in call.items
                if item.address.lower() in problems]

    async def _request(self, method: str, path: str, *, json: Any = None,
                       params: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        return await self.http.request(method, self.url(path), json=json, params=params,
                                       headers=headers)

    async def _add(self, path: str, addresses: list[str], problems: dict[str, str]) -> None:
        response = await self._request("POST", path, json={"recipient_emails": addresses})
        if response.is_success:
            return
        if _about_addresses(response, "recipient_emails"):
            await self._split(addresses, problems, response,
                              lambda part: self._add(path, part, problems))
            return
        raise self._failed("POST", path, response)

    async def _erase(self, addresses: list[str], problems: dict[str, str]) -> None:
        response = await self._request("POST", SEARCH_PATH, json={"emails": addresses})
        if response.status_code == 404:
            return  # none of them is a contact (any more): nothing to erase
        if _about_addresses(response, "emails"):
            await self._split(addresses, problems, response,
                              lambda part: self._erase(part, problems))
            return
        if not response.is_success:
            raise self._failed("POST", SEARCH_PATH, response)
        ids = self._contact_ids(response)
        if not ids:
            return
        response = await self._request("DELETE", CONTACTS_PATH, params={"ids": ",".join(ids)})
        if response.is_success or response.status_code == 404:
            return
        raise self._failed("DELETE", CONTACTS_PATH, response)

    async def _lift(self, call: Call, problems: dict[str, str]) -> None:
        for item in call.items:
            path = call.path.replace(EMAIL_SLOT, quote(item.address, safe=""))
            response = await self._request("DELETE", path)
            if response.is_success or response.status_code == 404:
                continue  # lifted now, or there was nothing to lift
            if response.status_code == 400:
                problems[item.address.lower()] = _problem(response)
                continue
            raise self._failed("DELETE", call.path, response)

    async def _split(self, addresses: list[str], problems: dict[str, str],
                     response: httpx.Response,
                     again: Callable[[list[str]], Awaitable[None]]) -> None:
        """A 400 about 'the addresses': halve until the refused ones stand alone."""
        if len(addresses) == 1:
            problems[addresses[0].lower()] = _problem(response)
            return
        middle = len(addresses) // 2
        await again(addresses[:middle])
        await again(addresses[middle:])

    def _contact_ids(self, response: httpx.Response) -> list[str]:
        try:
            result = response.json()["result"]
            ids = [str(entry["contact"]["id"]) for entry in result.values()
                   if isinstance(entry, dict) and isinstance(entry.get("contact"), dict)]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SyncFailed(f"{self.name}: POST {SEARCH_PATH}: unexpected answer") from exc
        return list(dict.fromkeys(ids))

    def _failed(self, method: str, path: str, response: httpx.Response) -> SyncFailed:
        return SyncFailed(
            f"{self.name}: {method} {_redact(path)}: HTTP {response.status_code}: "
            f"{_problem(response)}"
        )

    # pull --------------------------------------------------------------------
    async def pull(self, position: str, until: datetime) -> AsyncIterator[PullPage]:
        cursor = _Cursor.decode(position)
        end = int(until.timestamp())
        if cursor.end is not None:
            # A window a crash interrupted: finish it as it was, then read on.
            async for page in self._window(cursor):
                yield page
            cursor = _Cursor(since=cursor.end)
        if end >= cursor.since:
            async for page in self._window(_Cursor(cursor.since, end)):
                yield page
            cursor = _Cursor(since=end)
        yield PullPage((), cursor.encode())

    async def _window(self, cursor: _Cursor) -> AsyncIterator[PullPage]:
        """Every source for ``since <= created <= end``, page by page; each page's
        position resumes right after it (the next window starts at ``end`` again, an
        overlap of one second: an opt-out made in that second is never lost)."""
        assert cursor.end is not None
        for index in range(cursor.src, len(_SOURCES)):
            offset = cursor.off if index == cursor.src else 0
            if index < len(_LISTS):
                pages = self._list_pages(index, cursor.since, cursor.end, offset)
            else:
                pages = self._group_pages(index, cursor.since, cursor.end, offset)
            async for page in pages:
                yield page

    async def _list_pages(self, index: int, since: int, end: int,
                          offset: int) -> AsyncIterator[PullPage]:
        name, path, kind = _LISTS[index]
        while True:
            params = {"start_time": str(since), "end_time": str(end),
                      "limit": str(PAGE_SIZE), "offset": str(offset)}
            response = await self._request("GET", path, params=params)
            if not response.is_success:
                raise self._failed("GET", path, response)
            rows = self._rows(response, path)
            offset += len(rows)
            more = len(rows) >= PAGE_SIZE
            after = _Cursor(since, end, index, offset) if more else _Cursor(since, end, index + 1)
            opt_outs = [o for o in (self._listed(name, kind, row) for row in rows) if o]
            if rows:
                yield PullPage(opt_outs, after.encode())
            if not more:
                return

    async def _group_pages(self, index: int, since: int, end: int,
                           offset: int) -> AsyncIterator[PullPage]:
        response = await self._request("GET", GROUP_SUPPRESSIONS_PATH)
        if not response.is_success:
            raise self._failed("GET", GROUP_SUPPRESSIONS_PATH, response)
        rows = [row for row in self._rows(response, GROUP_SUPPRESSIONS_PATH)
                if since <= _seconds(row.get("created_at")) <= end]
        rows.sort(key=lambda r: (_seconds(r.get("created_at")), str(r.get("email")),
                                 str(r.get("group_id"))))
        for start in range(offset, len(rows), PAGE_SIZE):
            page = rows[start:start + PAGE_SIZE]
            done = start + len(page)
            after = _Cursor(since, end, index, done) if done < len(rows) \
                else _Cursor(since, end, index + 1)
            opt_outs = [o for o in (self._grouped(row) for row in page) if o]
            yield PullPage(opt_outs, after.encode())

    def _rows(self, response: httpx.Response, path: str) -> list[dict[str, Any]]:
        try:
            rows = response.json()
        except ValueError:
            rows = None
        if not isinstance(rows, list):
            raise SyncFailed(f"{self.name}: GET {path}: unexpected answer (not a list)")
        return [row for row in rows if isinstance(row, dict)]

    def _listed(self, name: str, kind: OptOutKind, row: dict[str, Any]) -> RemoteOptOut | None:
        email = row.get("email")
        if not isinstance(email, str) or not email:
            return None
        if kind == "hard_bounce" and not _permanent(row):
            return None
        record = {"list": name, **_flatten(row)}
        return RemoteOptOut(address=email, kind=kind, topic=None,
                            at=_when(row.get("created")), record=record)

    def _grouped(self, row: dict[str, Any]) -> RemoteOptOut | None:
        email = row.get("email")
        if not isinstance(email, str) or not email:
            return None
        record = {"list": "group_suppressions", **_flatten(row)}
        return RemoteOptOut(address=email, kind="unsubscribe",
                            topic=_group_topic(self.topic_of, row.get("group_id")),
                            at=_when(row.get("created_at")), record=record)


@dataclass(frozen=True)
class _Cursor:
    """Pull position: the next window starts at ``since``; while a window
    ``since..end`` is being read, ``src``/``off`` say where (source index, offset)."""

    since: int = 0
    end: int | None = None
    src: int = 0
    off: int = 0

    def encode(self) -> str:
        if self.end is None:
            return json.dumps({"since": self.since})
        return json.dumps({"since": self.since, "end": self.end, "src": self.src,
                           "off": self.off})

    @classmethod
    def decode(cls, position: str) -> _Cursor:
        """'' (or a position that is not ours) reads from the beginning: overlap is
        harmless, a gap is not."""
        try:
            data = json.loads(position) if position else {}
            since = int(data.get("since", 0))
            end = data.get("end")
            if end is None:
                return cls(since)
            src, off = int(data.get("src", 0)), int(data.get("off", 0))
            if not 0 <= src <= len(_SOURCES) or off < 0:
                return cls()
            return cls(since, int(end), src, off)
        except (ValueError, TypeError, AttributeError):
            return cls()


# webhook ---------------------------------------------------------------------
def parse_webhook(
    settings: ConnectorSettings,
    key: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    now: float,
) -> list[RemoteOptOut]:
    """Opt-outs in a Signed Event Webhook call (headers lower-cased).

    ``key`` is the verification key SendGrid shows (base64 DER SubjectPublicKeyInfo;
    PEM is accepted too). The signature (base64 DER ECDSA, SHA-256) covers the
    ``X-Twilio-Email-Event-Webhook-Timestamp`` value followed by the raw body.
    """
    _verify(key, headers, body, now)
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected(400, "body is not JSON") from exc
    if not isinstance(events, list):
        raise WebhookRejected(400, "body is not a JSON array of SendGrid events")
    topic_of = {tool_id: topic for topic, tool_id in settings.topic_map.items()}
    opt_outs: list[RemoteOptOut] = []
    for position, event in enumerate(events, start=1):
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise WebhookRejected(400, f"event {position} is not a SendGrid event")
        opt_out = _event_opt_out(event, topic_of, position)
        if opt_out is not None:
            opt_outs.append(opt_out)
    return opt_outs


def _verify(key: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    signature = headers.get(SIGNATURE_HEADER, "")
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    if not signature or not timestamp:
        raise WebhookRejected(401, "missing SendGrid signature or timestamp header")
    public_key = _public_key(key)
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise WebhookRejected(401, "bad SendGrid signature") from exc
    try:
        signed_at = float(timestamp)
    except ValueError as exc:
        raise WebhookRejected(401, "bad SendGrid timestamp") from exc
    if abs(now - signed_at) > WEBHOOK_TOLERANCE_S:
        raise WebhookRejected(401, "SendGrid timestamp too far from now (replayed call?)")


def _public_key(key: str) -> ec.EllipticCurvePublicKey:
    try:
        text = key.strip()
        if "BEGIN PUBLIC KEY" in text:
            loaded = load_pem_public_key(text.encode("ascii"))
        else:
            loaded = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise WebhookRejected(401, "the webhook verification key is not a public key") from exc
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise WebhookRejected(401, "the webhook verification key is not an EC key")
    return loaded


def _event_opt_out(event: dict[str, Any], topic_of: Mapping[str, str],
                   position: int) -> RemoteOptOut | None:
    kind: OptOutKind
    topic: str | None = None
    name = event["event"]
    if name == "unsubscribe":
        kind = "unsubscribe"
    elif name == "group_unsubscribe":
        kind = "unsubscribe"
        topic = _group_topic(topic_of, event.get("asm_group_id"))
    elif name == "spamreport":
        kind = "complaint"
    elif name == "bounce" and _permanent_event(event):
        kind = "hard_bounce"
    else:
        return None  # deliveries, opens, clicks, blocks, deferrals...
    email = event.get("email")
    if not isinstance(email, str) or not email:
        raise WebhookRejected(400, f"event {position} ({name}) has no email")
    return RemoteOptOut(address=email, kind=kind, topic=topic,
                        at=_when(event.get("timestamp")), record=_flatten(event))


# helpers -----------------------------------------------------------------------
def _batches(items: Sequence[PushItem], size: int
             ) -> list[tuple[tuple[PushItem, ...], list[str]]]:
    """Items in order, cut so each batch names at most ``size`` distinct addresses
    (the same address twice in one batch is sent once)."""
    batches: list[tuple[list[PushItem], dict[str, str]]] = []
    for item in items:
        lower = item.address.lower()
        if not batches or (lower not in batches[-1][1] and len(batches[-1][1]) >= size):
            batches.append(([], {}))
        members, addresses = batches[-1]
        members.append(item)
        addresses.setdefault(lower, item.address)
    return [(tuple(members), list(addresses.values())) for members, addresses in batches]


def _addresses(body: Any, field: str) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get(field), list):
        raise SyncFailed(f"call has no {field} list")
    return [str(a) for a in body[field]]


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        data = response.json()
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _about_addresses(response: httpx.Response, field: str) -> bool:
    """A 400 whose every error names the address list (SendGrid's ``field``)."""
    if response.status_code != 400:
        return False
    errors = _errors(response)
    return bool(errors) and all(str(e.get("field") or "").startswith(field) for e in errors)


def _problem(response: httpx.Response) -> str:
    """The tool's words, without any address."""
    messages = [str(e.get("message") or "") for e in _errors(response)]
    text = "; ".join(m for m in messages if m) or response.reason_phrase or "error"
    return _redact(text)[:300]


def _redact(text: str) -> str:
    return _ADDRESS.sub("{address}", text.replace("%40", "@"))


def _permanent(row: Mapping[str, Any]) -> bool:
    """A bounce-list entry is permanent when its enhanced status is 5.x.x (or, with no
    status, its SMTP reply code is 5xx)."""
    status = str(row.get("status") or "").strip()
    if status:
        return status.startswith("5")
    return str(row.get("reason") or "").strip().startswith("5")


def _permanent_event(event: Mapping[str, Any]) -> bool:
    """Event Webhook ``bounce``: ``type`` "bounce" is permanent, "blocked" temporary."""
    kind = event.get("type")
    if kind is not None:
        return bool(kind == "bounce")
    return _permanent(event)


def _group_topic(topic_of: Mapping[str, str], group: Any) -> str | None:
    """Our topic for a SendGrid group; None (everything) for a group no topic maps to:
    an opt-out whose scope we cannot name is widened, never dropped."""
    if group is None or isinstance(group, bool):
        return None
    return topic_of.get(str(group))


def _seconds(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _when(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _flatten(row: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in row.items():
        if value is None:
            out[str(key)] = ""
        elif isinstance(value, str):
            out[str(key)] = value
        elif isinstance(value, bool | int | float):
            out[str(key)] = json.dumps(value)
        else:
            out[str(key)] = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return out
