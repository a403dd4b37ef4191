"""Postmark: suppressions per message stream, pushed and pulled through the Suppressions API.

What the API offers (server token in ``X-Postmark-Server-Token``):

- ``POST /message-streams/{stream}/suppressions`` with ``{"Suppressions": [{"EmailAddress"}]}``
  (at most 50 addresses) suppresses them in that stream; the answer has one
  ``{"EmailAddress", "Status": "Suppressed"|"Failed", "Message"}`` per address. An address
  that is already suppressed stays as it is (the call is idempotent).
- ``POST /message-streams/{stream}/suppressions/delete``, same shape, reactivates them
  (``Deleted``/``Failed``); a spam complaint can never be reactivated (``Failed``).
- ``GET /message-streams/{stream}/suppressions/dump?fromdate=&todate=`` lists a stream's
  suppressions (``HardBounce``, ``SpamComplaint``, ``ManualSuppression`` -- an unsubscribe
  link click is a ManualSuppression with Origin ``Recipient``). No paging, whole days.
- Errors: 401 for a bad token, 422 ``{"ErrorCode", "Message"}`` for a bad request.

How mailprefs maps onto that:

- ``settings.message_stream`` is the stream a tool-wide opt-out stops; a topic maps to
  another stream (``topic_map``). A tool-wide suppression is sent to that stream *and* to
  every mapped stream (Postmark has no server-wide list; an opt-out from everything must
  stop every stream we mail from). A lifted tool-wide suppression reactivates the main
  stream only: a topic opt-out may still be in force for a mapped stream.
- Complaints and hard bounces cannot be written as such (Postmark creates those itself),
  so they are pushed as suppressions too, and never lifted.
- Postmark keeps no contacts, so ``delete`` (erasure) has nothing to call.
- Pulls skip Origin ``Customer``: those are made through the API or the web app by the
  account itself, i.e. our own pushes coming back (recording them after a local lift
  would undo a fresh opt-in).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import OptOutKind, RemoteOptOut
from sync.base import HttpConnector
from sync.connector import (
    Call,
    PullPage,
    PushItem,
    Rejection,
    SyncFailed,
    WebhookRejected,
)

SIGNED = False
"""Postmark does not sign webhooks: the URL carries ``?key=`` (checked by /hooks)."""

MAX_SUPPRESSIONS = 50
"""Addresses per create/delete suppressions request (the API's documented maximum)."""
PAGE_SIZE = 500
"""Opt-outs per PullPage. The dump has no paging: this only bounds one ledger write."""
OVERLAP = timedelta(minutes=2)
"""Pulls look this far behind the last suppression seen: a suppression that shows up in
the dump late (Postmark processes some asynchronously) or in the same second as the last
one is not lost. The window is delivered again only when what it holds changed."""

_REASON_KIND: dict[str, OptOutKind] = {
    "ManualSuppression": "unsubscribe",
    "HardBounce": "hard_bounce",
    "SpamComplaint": "complaint",
}
_NEVER_LIFTED = frozenset({"complaint", "hard_bounce", "soft_bounce"})
_OWN_ORIGIN = "customer"
_PERMANENT_BOUNCES = frozenset({"HardBounce", "BadEmailAddress"})
_PERMANENT_BOUNCE_CODES = frozenset({1, 100000})
_EVIDENCE_SKIP = frozenset({"Content"})
"""Bounce webhook fields not kept as evidence (the raw bounced message)."""


class PostmarkConnector(HttpConnector):
    kind = "postmark"
    max_batch = MAX_SUPPRESSIONS
    max_concurrency = 2
    """Postmark documents no concurrency limit, only that it answers 429 when requests
    come too fast: two calls in flight (100 addresses) is kind to a shared server token."""
    page_size = PAGE_SIZE

    # push -------------------------------------------------------------------
    def streams(self) -> list[str]:
        """The main stream first, then every mapped one (each once)."""
        seen = [self.settings.message_stream]
        for stream in self.topic_map.values():
            if stream not in seen:
                seen.append(stream)
        return seen

    def _targets(self, item: PushItem) -> list[tuple[str, str]]:
        """(endpoint, stream) pairs an item needs; none where Postmark cannot do it."""
        stream = self.tool_topic(item)
        if item.action == "suppress":
            return [("suppress", s) for s in ([stream] if stream else self.streams())]
        if item.action == "lift" and item.reason not in _NEVER_LIFTED:
            return [("lift", stream or self.settings.message_stream)]
        return []  # delete: Postmark stores no contacts; complaint/bounce: never lifted

    def plan(self, items: Sequence[PushItem]) -> list[Call]:
        calls: list[Call] = []
        open_batches: dict[tuple[str, str], list[PushItem]] = {}
        pending: dict[tuple[str, str], str] = {}
        """(stream, address) -> the action an open batch holds for it."""

        def close(key: tuple[str, str]) -> None:
            calls.append(self._call(key[0], key[1], open_batches.pop(key)))

        for item in items:
            address = item.address.strip().lower()
            for action, stream in self._targets(item):
                if pending.get((stream, address), action) != action:
                    # The same address changes the other way: earlier batches go first.
                    for key in list(open_batches):
                        close(key)
                    pending.clear()
                key = (action, stream)
                batch = open_batches.setdefault(key, [])
                batch.append(item)
                pending[(stream, address)] = action
                if len(batch) >= self.max_batch:
                    close(key)
        for key in list(open_batches):
            close(key)
        return calls

    def _call(self, action: str, stream: str, items: list[PushItem]) -> Call:
        base = f"/message-streams/{quote(stream, safe='')}/suppressions"
        body = {"Suppressions": [{"EmailAddress": i.address} for i in items]}
        if action == "suppress":
            return Call("POST", base, tuple(items), json=body,
                        note=f"suppress in message stream {stream}")
        return Call("POST", base + "/delete", tuple(items), json=body,
                    note=f"reactivate (delete suppression) in message stream {stream}")

    def headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.api_key, "Accept": "application/json"}

    async def send(self, call: Call) -> list[Rejection]:
        response = await self.http.request(call.method, self.url(call.path), json=call.json,
                                           params=call.params, headers=self.headers())
        if response.status_code >= 300:
            raise SyncFailed(self._problem(call, response, call.items))
        answer = _json(response)
        results = answer.get("Suppressions") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise SyncFailed(f"{self.name}: {call.method} {call.path}: unexpected answer "
                             f"(HTTP {response.status_code}, no Suppressions list)")
        by_address: dict[str, list[PushItem]] = {}
        for item in call.items:
            by_address.setdefault(item.address.strip().lower(), []).append(item)
        rejections: list[Rejection] = []
        for position, result in enumerate(results):
            if not isinstance(result, dict) or result.get("Status") != "Failed":
                continue
            address = str(result.get("EmailAddress") or "").strip().lower()
            items = by_address.get(address)
            if items is None and position < len(call.items):
                items = [call.items[position]]  # answers come one per address, in order
            for item in items or []:
                problem = _scrub(str(result.get("Message") or "Failed"), [item.address])
                rejections.append(Rejection(item, problem))
        return rejections

    def _problem(self, call: Call, response: httpx.Response, items: Iterable[PushItem]) -> str:
        body = _json(response)
        if not isinstance(body, dict):
            body = {}
        code = body.get("ErrorCode")
        message = str(body.get("Message") or response.reason_phrase or "").strip()
        what = f"ErrorCode {code}: {message}" if code is not None else message
        text = f"{self.name}: {call.method} {call.path}: HTTP {response.status_code}: {what}"
        return _scrub(text, [i.address for i in items])

    # pull -------------------------------------------------------------------
    async def pull(self, position: str, until: datetime) -> AsyncIterator[PullPage]:
        until = _aware(until)
        marks = _read_position(position)
        for stream in self.streams():
            async for page in self._pull_stream(stream, marks, until):
                yield page

    async def _pull_stream(self, stream: str, marks: dict[str, Mark],
                           until: datetime) -> AsyncIterator[PullPage]:
        mark = marks.get(stream)
        params = {"todate": (until + timedelta(days=1)).date().isoformat()}
        if mark is not None:
            # Whole days in Postmark's own time zone: one day earlier covers any offset.
            since = mark.at - OVERLAP - timedelta(days=1)
            params["fromdate"] = since.date().isoformat()
        path = f"/message-streams/{quote(stream, safe='')}/suppressions/dump"
        response = await self.http.request("GET", self.url(path), params=params,
                                           headers=self.headers())
        if response.status_code >= 300:
            raise SyncFailed(self._problem(Call("GET", path, ()), response, ()))
        answer = _json(response)
        rows = answer.get("Suppressions") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise SyncFailed(f"{self.name}: GET {path}: unexpected answer (no Suppressions list)")
        dump = sorted(_rows(rows, self.name, path, until), key=lambda r: r.order)
        todo = _to_deliver(dump, mark)
        topic = None if stream == self.settings.message_stream else self.topic_of.get(stream)
        for start in range(0, len(todo), self.page_size):
            page = todo[start:start + self.page_size]
            last = page[-1]
            window = sum(1 for r in dump
                         if last.at - OVERLAP <= r.at and r.order <= last.order)
            marks[stream] = Mark(last.at, window)
            opt_outs = [r.opt_out(stream, topic) for r in page if r.kind is not None]
            yield PullPage(opt_outs, _write_position(marks))


@dataclass(frozen=True)
class Mark:
    """Where a stream's pull got to: the last suppression's time, and how many
    suppressions of the window ``[at - OVERLAP, at]`` have been delivered."""

    at: datetime
    seen: int


@dataclass(frozen=True)
class _Row:
    at: datetime
    address: str
    reason: str
    origin: str
    raw: dict[str, Any]
    """The tool's entry; flattened into evidence only when it is delivered (a pull
    re-reads a day or more of entries that are mostly not news)."""

    @property
    def order(self) -> tuple[datetime, str]:
        return self.at, self.address.lower()

    @property
    def kind(self) -> OptOutKind | None:
        """None for our own pushes (Origin Customer): delivered for the position only."""
        if self.origin.lower() == _OWN_ORIGIN:
            return None
        return _REASON_KIND.get(self.reason, "unsubscribe")

    def opt_out(self, stream: str, topic: str | None) -> RemoteOptOut:
        kind = self.kind or "unsubscribe"
        return RemoteOptOut(
            address=self.address, kind=kind,
            topic=topic if kind == "unsubscribe" else None,
            at=self.at, record={**_flatten(self.raw), "MessageStream": stream},
        )


def _rows(rows: list[Any], name: str, path: str, until: datetime) -> Iterable[_Row]:
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("EmailAddress"), str):
            raise SyncFailed(f"{name}: GET {path}: unexpected suppression entry")
        at = _parse_time(row.get("CreatedAt"))
        if at is None:
            raise SyncFailed(f"{name}: GET {path}: a suppression without a valid CreatedAt")
        if at > until:
            continue
        yield _Row(at, row["EmailAddress"], str(row.get("SuppressionReason") or ""),
                   str(row.get("Origin") or ""), row)


def _to_deliver(dump: list[_Row], mark: Mark | None) -> list[_Row]:
    """Everything after the mark; the window before it again only if it changed."""
    if mark is None:
        return dump
    window = [r for r in dump if mark.at - OVERLAP <= r.at <= mark.at]
    newer = [r for r in dump if r.at > mark.at]
    return newer if len(window) == mark.seen else window + newer


def _read_position(position: str) -> dict[str, Mark]:
    """The stored position; an unreadable one starts from the beginning (overlap, no loss)."""
    if not position:
        return {}
    try:
        data = json.loads(position)
        return {stream: Mark(datetime.fromisoformat(m["at"]), int(m["seen"]))
                for stream, m in data["streams"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_position(marks: Mapping[str, Mark]) -> str:
    streams = {s: {"at": m.at.astimezone(UTC).isoformat(), "seen": m.seen}
               for s, m in marks.items()}
    return json.dumps({"streams": streams}, sort_keys=True, separators=(",", ":"))


# webhooks -------------------------------------------------------------------
def parse_webhook(settings: ConnectorSettings, key: str, headers: Mapping[str, str],
                  query: Mapping[str, str], body: bytes, now: float) -> list[RemoteOptOut]:
    """Subscription change, bounce and spam complaint webhooks (one event per call).

    Unsigned: /hooks has already checked the ``?key=`` token. Reactivations, soft bounces
    and other record types give nothing; a body that is not a Postmark event is refused.
    """
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("RecordType"), str):
        raise WebhookRejected(400, "not a Postmark webhook event (no RecordType)")
    record_type = event["RecordType"]
    stream = event.get("MessageStream")
    topic = None
    if isinstance(stream, str) and stream != settings.message_stream:
        topic = {v: k for k, v in settings.topic_map.items()}.get(stream)
    if record_type == "SubscriptionChange":
        address = _field(event, "Recipient")
        suppress = event.get("SuppressSending")
        if not isinstance(suppress, bool):
            raise WebhookRejected(400, "SubscriptionChange without SuppressSending")
        if not suppress or str(event.get("Origin") or "").lower() == _OWN_ORIGIN:
            return []  # a reactivation, or our own push coming back
        reason = str(event.get("SuppressionReason") or "ManualSuppression")
        kind = _REASON_KIND.get(reason, "unsubscribe")
        at = _parse_time(event.get("ChangedAt"))
    elif record_type == "Bounce":
        address = _field(event, "Email")
        bounce = event.get("Type")
        if bounce == "SpamComplaint":
            kind = "complaint"
        elif bounce in _PERMANENT_BOUNCES or event.get("TypeCode") in _PERMANENT_BOUNCE_CODES:
            kind = "hard_bounce"
        else:
            return []  # soft, transient, auto-replies...: not an opt-out
        at = _parse_time(event.get("BouncedAt"))
    elif record_type == "SpamComplaint":
        address = _field(event, "Email")
        kind = "complaint"
        at = _parse_time(event.get("BouncedAt"))
    else:
        return []  # Delivery, Open, Click, Inbound...: not an opt-out
    return [RemoteOptOut(address=address, kind=kind,
                         topic=topic if kind == "unsubscribe" else None,
                         at=at, record=_flatten(event))]


def _field(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or "@" not in value:
        raise WebhookRejected(400, f"{event.get('RecordType')} event without a valid {name}")
    return value


# helpers --------------------------------------------------------------------
def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A tool record as flat strings (evidence): nested keys joined with dots."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        if key in _EVIDENCE_SKIP or value is None:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, bool):
            flat[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            flat[name] = str(value)
        else:
            flat[name] = json.dumps(value, sort_keys=True)
    return flat


def _scrub(text: str, addresses: Iterable[str]) -> str:
    """No address in a message meant for logs."""
    for address in addresses:
        if address:
            text = _replace_ci(text, address, "{address}")
    return text


def _replace_ci(text: str, old: str, new: str) -> str:
    lowered, target = text.lower(), old.lower()
    out, start = [], 0
    while (found := lowered.find(target, start)) >= 0:
        out.append(text[start:found])
        out.append(new)
        start = found + len(old)
    out.append(text[start:])
    return "".join(out)
