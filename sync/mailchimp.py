"""Mailchimp Marketing API 3.0: member status per audience, pushed in batches, pulled by
``last_changed``.

What the API offers (HTTP Basic auth: any user name, the API key as password; the key's
``-<dc>`` suffix names the data centre, ``https://<dc>.api.mailchimp.com/3.0``):

- ``POST /lists/{list_id}`` ("batch subscribe or unsubscribe") with
  ``{"members": [{"email_address", "status"}], "update_existing": true}``: at most 500
  members per call. The answer is 200 with ``new_members``, ``updated_members`` and
  ``errors`` (``{"email_address", "error", "error_code"}`` per refused address:
  ``ERROR_CONTACT_EXISTS`` / ``ERROR_GENERIC``, e.g. an address that "looks fake or
  invalid" or "was permanently deleted and cannot be re-imported"). Setting a member
  that is already ``unsubscribed`` to ``unsubscribed`` again changes nothing, so the call
  is idempotent.
- ``POST /lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent`` erases a
  member (204; 404 when it is not there: already gone). ``subscriber_hash`` is the MD5
  of the lower-cased address.
- ``GET /lists/{list_id}/members?status=&since_last_changed=&before_last_changed=
  &sort_field=last_changed&sort_dir=ASC&count=&offset=`` lists members (``count`` at most
  1000, ``total_items`` in the answer); ``fields=`` trims the answer.
- Errors are problem documents ``{"type", "title", "status", "detail", "instance"}``
  (400 "Invalid Resource" with an ``errors`` array of ``{"field", "message"}``, 401 "API
  Key Invalid", 404 "Resource Not Found", 429 "Too Many Requests": more than 10
  simultaneous connections per key; no Retry-After header is documented).

How mailprefs maps onto that:

- ``settings.list_id`` is the audience a tool-wide opt-out stops; a topic maps to another
  audience (``topic_map``). Mailchimp treats audiences independently, so a tool-wide
  suppression is sent to that audience *and* every mapped audience (someone who left
  everything must not get the newsletter audience's mail either). Members that do not
  exist yet are created as ``unsubscribed``, so a later import cannot mail them.
- The API cannot set ``cleaned`` (Mailchimp's own bounce state) and has no complaint
  list, so complaints and hard bounces are pushed as ``unsubscribed``, tool-wide.
- Mailchimp does not let an API call re-subscribe someone who unsubscribed (that needs the
  person's own confirmation), so ``lift`` sends nothing.
- ``delete`` (erasure) permanently deletes the member from every audience we sync.
- Pulls read ``unsubscribed`` members (an ``unsubscribe_reason`` mentioning abuse is a
  spam complaint) and ``cleaned`` members (Mailchimp cleans an address after a hard
  bounce, or after repeated soft bounces it then treats as permanent) of each audience.
  The other member statuses (``subscribed``, ``pending``, ``transactional``,
  ``archived``) are never asked for and never an opt-out: ``archived`` is the account
  putting a contact aside, not the person leaving
  (https://mailchimp.com/developer/marketing/api/list-members/).
- Webhooks (form-encoded, https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/
  and https://developer.mailchimp.com/documentation/mailchimp/guides/about-webhooks/):
  an ``unsubscribe`` with ``data[action]=unsub`` is the person's unsubscribe; with
  ``data[action]=delete`` (or ``archive``) an admin deleted or archived the member,
  which says nothing about the person's wish and is not recorded; ``data[reason]=abuse``
  (on any action) is a spam complaint. ``cleaned`` is a hard bounce (``hard``) or a
  complaint (``abuse``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import OptOutKind, RemoteOptOut
from sync.base import HttpConnector, chunks
from sync.connector import Call, PullPage, PushItem, Rejection, SyncFailed, WebhookRejected
from sync.http import RetryPolicy

SIGNED = False
"""Mailchimp does not sign webhooks: the URL carries ``?key=`` (checked by /hooks)."""

MAX_MEMBERS = 500
"""Members per batch subscribe/unsubscribe call (the API's documented maximum)."""
MAX_CONNECTIONS = 10
"""Simultaneous connections per API key (the API's documented limit; 429 above it)."""
PAGE_SIZE = 1000
"""Members per list request (``count``'s documented maximum)."""
SETTLE = timedelta(seconds=60)
"""Changes younger than this (before ``until``) are read again by the next pull: clocks
differ and the tool's index may lag, and an overlap is harmless where a loss is not."""
OVERLAP = 100
"""When a page can only be left by ``offset`` (more than a page of changes in one second),
step back this many members, in case some left the filter while we were paging."""

_STATUSES = ("unsubscribed", "cleaned")
_FIELDS = ",".join(
    [f"members.{name}" for name in ("id", "email_address", "status", "unsubscribe_reason",
                                     "last_changed", "list_id", "timestamp_opt", "source")]
    + ["total_items"]
)
_ADDRESS = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+")
_DELETE = "/actions/delete-permanent"


def subscriber_hash(address: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased address."""
    return hashlib.md5(address.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def base_url_for(api_key: str) -> str:
    """``https://<dc>.api.mailchimp.com/3.0`` from the key's ``-<dc>`` suffix ('' if none)."""
    _, dash, dc = api_key.rpartition("-")
    if not dash or not re.fullmatch(r"[a-z]{2,4}[0-9]{1,3}", dc):
        return ""
    return f"https://{dc}.api.mailchimp.com/3.0"


def _scrub(text: str) -> str:
    """The tool's words without any address in them."""
    return _ADDRESS.sub("<address>", text)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(value: str) -> int | None:
    """Mailchimp's ISO 8601 time ('2015-09-15T14:40:47+00:00') in whole seconds."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A JSON object as ``{"a.b": "text"}`` (evidence is stored as strings)."""
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key, inner in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(inner, Mapping):
                out.update(flatten(inner, name))
            elif isinstance(inner, list):
                out[name] = json.dumps(inner, separators=(",", ":"))
            elif isinstance(inner, bool):
                out[name] = "true" if inner else "false"
            else:
                out[name] = "" if inner is None else str(inner)
    return out


def _problem(response: httpx.Response) -> str:
    """A problem document as one line: title, detail and field errors (no addresses)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    words = [str(body.get(k)) for k in ("title", "detail") if body.get(k)]
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors[:5]:
            if isinstance(error, dict):
                words.append(f"{error.get('field', '')}: {error.get('message', '')}")
    return _scrub(f"HTTP {response.status_code}: " + "; ".join(words))


@dataclass
class _Stream:
    """Where one (audience, status) listing stands: members changed after ``since``
    (epoch seconds; None: from the beginning), of which the first ``offset`` are read."""

    since: int | None = None
    offset: int = 0

    def dump(self) -> dict[str, Any]:
        return {"since": "" if self.since is None else _iso(self.since),
                "offset": self.offset}


class MailchimpConnector(HttpConnector):
    kind = "mailchimp"
    max_batch = MAX_MEMBERS
    max_concurrency = MAX_CONNECTIONS

    def __init__(
        self,
        settings: ConnectorSettings,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__(settings, client, api_key=api_key, policy=policy)
        if not self.base_url:
            self.base_url = base_url_for(api_key)
            if not self.base_url:
                raise SyncFailed(
                    f"{self.name}: the API key in ${settings.api_key_env} does not end in "
                    "-<data centre> (like -us21); set base_url instead"
                )
        token = base64.b64encode(f"mailprefs:{api_key}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}

    # where things go ---------------------------------------------------------
    def audiences(self) -> list[str]:
        """The main audience, then every mapped topic audience (each once)."""
        found = [self.settings.list_id]
        for audience in self.topic_map.values():
            if audience and audience not in found:
                found.append(audience)
        return found

    def _targets(self, item: PushItem) -> list[str]:
        if item.action == "delete":
            return self.audiences()
        if item.reason in ("complaint", "hard_bounce", "soft_bounce"):
            return self.audiences()  # never topic-scoped: stop everything
        audience = self.tool_topic(item)
        return self.audiences() if audience is None else [audience]

    def _label(self, audience: str) -> str:
        if audience == self.settings.list_id:
            return f"audience {audience}"
        topic = self.topic_of.get(audience)
        return f"audience {audience} (topic {topic})" if topic else f"audience {audience}"

    # push ----------------------------------------------------------------------
    def plan(self, items: Sequence[PushItem]) -> list[Call]:
        groups: dict[tuple[str, str], list[PushItem]] = {}
        for item in items:
            if item.action == "lift":
                continue  # Mailchimp needs the person's own confirmation to re-subscribe
            for audience in self._targets(item):
                groups.setdefault((item.action, audience), []).append(item)
        calls: list[Call] = []
        for (action, audience), grouped in groups.items():
            if action == "suppress":
                for chunk in chunks(grouped, MAX_MEMBERS):
                    calls.append(self._batch_call(audience, chunk))
            else:
                for item in grouped:
                    calls.append(Call(
                        "POST",
                        f"/lists/{audience}/members/{subscriber_hash(item.address)}{_DELETE}",
                        (item,),
                        note=f"erase the member permanently from {self._label(audience)}",
                    ))
        return calls

    def _batch_call(self, audience: str, items: Sequence[PushItem]) -> Call:
        members: list[dict[str, str]] = []
        seen: set[str] = set()
        for item in items:
            lowered = item.address.lower()
            if lowered in seen:
                continue  # one member per address in a request
            seen.add(lowered)
            members.append({"email_address": item.address, "status": "unsubscribed"})
        return Call(
            "POST",
            f"/lists/{audience}",
            tuple(items),
            json={"members": members, "update_existing": True},
            note=f"set members unsubscribed in {self._label(audience)}",
        )

    async def send(self, call: Call) -> list[Rejection]:
        response = await self.http.request(call.method, self.url(call.path), json=call.json,
                                           params=call.params, headers=self._headers)
        if call.path.endswith(_DELETE):
            return self._single(call, response)
        if response.status_code != 200:
            raise SyncFailed(f"{self.name}: {call.method} {call.path}: {_problem(response)}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SyncFailed(f"{self.name}: {call.method} {call.path}: the answer is not "
                             "a batch result")
        audience = call.path.rsplit("/", 1)[-1]
        by_address: dict[str, list[PushItem]] = {}
        for item in call.items:
            by_address.setdefault(item.address.lower(), []).append(item)
        rejections: list[Rejection] = []
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            address = str(error.get("email_address", "")).lower()
            code = str(error.get("error_code") or "ERROR")
            problem = _scrub(f"{code} in audience {audience}: {error.get('error', '')}")
            matched = by_address.get(address)
            if matched is None:
                self.stats.errors.append(f"{call.path}: an error for an address not in the "
                                         f"call ({code})")
                continue
            rejections.extend(Rejection(item, problem) for item in matched)
        return rejections

    def _single(self, call: Call, response: httpx.Response) -> list[Rejection]:
        status = response.status_code
        path = _template(call.path)
        if status in (200, 204, 404):  # 404: not (or no longer) a member: nothing to erase
            return []
        if status in (400, 405, 422):  # about this one member
            audience = call.path.split("/")[2]
            return [Rejection(item, f"audience {audience}: {_problem(response)}")
                    for item in call.items]
        raise SyncFailed(f"{self.name}: {call.method} {path}: {_problem(response)}")

    # pull ----------------------------------------------------------------------
    async def pull(self, position: str, until: datetime) -> AsyncIterator[PullPage]:
        streams = self._load(position)
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        before = int(until.timestamp())
        settled = before - int(SETTLE.total_seconds())
        for audience in self.audiences():
            for status in _STATUSES:
                key = f"{audience}/{status}"
                async for page in self._pull_stream(audience, status, key, streams, before,
                                                    settled):
                    yield page

    async def _pull_stream(self, audience: str, status: str, key: str,
                           streams: dict[str, _Stream], before: int, settled: int
                           ) -> AsyncIterator[PullPage]:
        stream = streams.setdefault(key, _Stream())
        start = stream.since
        last_seen: int | None = None
        while True:
            params = {
                "status": status,
                "sort_field": "last_changed",
                "sort_dir": "ASC",
                "before_last_changed": _iso(before),
                "count": str(PAGE_SIZE),
                "offset": str(stream.offset),
                "fields": _FIELDS,
            }
            if stream.since is not None:
                params["since_last_changed"] = _iso(stream.since)
            path = f"/lists/{audience}/members"
            response = await self.http.request("GET", self.url(path), params=params,
                                               headers=self._headers)
            if response.status_code != 200:
                raise SyncFailed(f"{self.name}: GET {path}: {_problem(response)}")
            members, total = _members(response, self.name, path)
            opt_outs = [o for o in (self._opt_out(audience, m) for m in members) if o]
            stamps = [s for s in (_epoch(str(m.get("last_changed", ""))) for m in members)
                      if s is not None]
            page_max = max(stamps) if stamps else None
            if page_max is not None:
                last_seen = page_max if last_seen is None else max(last_seen, page_max)
            done = len(members) < PAGE_SIZE or stream.offset + len(members) >= total
            if done:
                # Everything up to the settled mark is in; younger changes are read again.
                upto = settled if last_seen is None else min(last_seen, settled)
                streams[key] = _Stream(upto if start is None else max(start, upto), 0)
            else:
                anchor = None if page_max is None else min(page_max - 1, settled)
                if anchor is not None and (stream.since is None or anchor > stream.since):
                    streams[key] = _Stream(anchor, 0)  # re-read from the page's last second
                else:  # more than a page changed in one second: page on by offset
                    streams[key] = _Stream(stream.since,
                                           stream.offset + max(1, len(members) - OVERLAP))
            stream = streams[key]
            yield PullPage(opt_outs, self._dump(streams))
            if done:
                return

    def _opt_out(self, audience: str, member: Mapping[str, Any]) -> RemoteOptOut | None:
        address = str(member.get("email_address") or "")
        status = member.get("status")
        if not address:
            return None
        kind: OptOutKind
        if status == "cleaned":
            kind = "hard_bounce"
        elif status == "unsubscribed":
            reason = str(member.get("unsubscribe_reason") or "")
            kind = "complaint" if "abuse" in reason.lower() else "unsubscribe"
        else:
            return None
        topic = None if audience == self.settings.list_id else self.topic_of.get(audience)
        stamp = _epoch(str(member.get("last_changed", "")))
        at = datetime.fromtimestamp(stamp, UTC) if stamp is not None else None
        return RemoteOptOut(address=address, kind=kind, topic=topic, at=at,
                            record=flatten(member))

    def _load(self, position: str) -> dict[str, _Stream]:
        if not position:
            return {}
        try:
            raw = json.loads(position)
            streams = raw["streams"]
            return {str(k): _Stream(_epoch(v["since"]) if v["since"] else None,
                                    int(v["offset"]))
                    for k, v in streams.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SyncFailed(f"{self.name}: the stored pull position is not a Mailchimp "
                             "position; run sync with --full") from exc

    @staticmethod
    def _dump(streams: Mapping[str, _Stream]) -> str:
        return json.dumps({"v": 1, "streams": {k: s.dump() for k, s in streams.items()}},
                          sort_keys=True, separators=(",", ":"))


def _members(response: httpx.Response, name: str, path: str
             ) -> tuple[list[Mapping[str, Any]], int]:
    try:
        body = response.json()
        members = body["members"]
        total = int(body.get("total_items", len(members)))
    except (ValueError, KeyError, TypeError) as exc:
        raise SyncFailed(f"{name}: GET {path}: the answer is not a member list") from exc
    if not isinstance(members, list):
        raise SyncFailed(f"{name}: GET {path}: the answer is not a member list")
    return [m for m in members if isinstance(m, Mapping)], total


def _template(path: str) -> str:
    return re.sub(r"/[0-9a-f]{32}(?=/|$)", "/{subscriber_hash}", path)


# webhooks --------------------------------------------------------------------------
_FIRED_AT = "%Y-%m-%d %H:%M:%S"
_NOT_THE_PERSONS = frozenset({"delete", "archive"})
"""``data[action]`` of an ``unsubscribe`` webhook sent because an admin deleted or
archived the member (``unsub`` is the person's own unsubscribe)."""


def parse_webhook(
    settings: ConnectorSettings,
    key: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    now: float,
) -> list[RemoteOptOut]:
    """Opt-outs in one Mailchimp webhook call (form-encoded ``type=...&data[...]=...``).

    ``unsubscribe``: ``data[reason]=abuse`` is a spam complaint whatever the action;
    otherwise ``data[action]=delete`` or ``archive`` (an admin removed the member, with
    ``data[reason]=manual``) gives nothing, and any other action (``unsub``, or none:
    Mailchimp has been seen leaving it out) is the person's unsubscribe. ``cleaned``
    with ``data[reason]=hard`` is a hard bounce, with ``abuse`` a complaint. Other event
    types (subscribe, profile, upemail, campaign) give nothing. Mailchimp does not sign
    its calls: the /hooks endpoint checked the URL's key already."""
    content_type = headers.get("content-type", "").lower()
    if content_type and "application/x-www-form-urlencoded" not in content_type:
        raise WebhookRejected(400, "Mailchimp webhooks are form-encoded")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookRejected(400, "the body is not a Mailchimp webhook form") from exc
    fields = {name: values[-1] for name, values in form.items()}
    event, fired = fields.get("type", ""), fields.get("fired_at", "")
    if not event or not fired:
        raise WebhookRejected(400, "a Mailchimp webhook has a type and fired_at")
    try:
        at = datetime.strptime(fired, _FIRED_AT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise WebhookRejected(400, "fired_at is not 'YYYY-MM-DD HH:MM:SS'") from exc
    if event not in ("unsubscribe", "cleaned"):
        return []
    address, audience = fields.get("data[email]", ""), fields.get("data[list_id]", "")
    if "@" not in address or not audience:
        raise WebhookRejected(400, f"a {event} webhook has data[email] and data[list_id]")
    reason = fields.get("data[reason]", "").strip().lower()
    action = fields.get("data[action]", "").strip().lower()
    kind: OptOutKind
    if event == "unsubscribe":
        if reason == "abuse":
            kind = "complaint"  # a spam report: complaints are never lifted
        elif action in _NOT_THE_PERSONS:
            return []  # the account deleted or archived the member: not an opt-out
        else:
            kind = "unsubscribe"
    elif reason == "hard":
        kind = "hard_bounce"
    elif reason == "abuse":
        kind = "complaint"
    else:
        return []  # not a permanent failure
    if audience == settings.list_id:
        topic = None
    else:
        topics = {tool_id: ours for ours, tool_id in settings.topic_map.items()}
        if audience not in topics:
            raise WebhookRejected(400, "the event is for an audience this connector does "
                                       "not sync")
        topic = topics[audience]
    return [RemoteOptOut(address=address, kind=kind, topic=topic, at=at, record=fields)]

