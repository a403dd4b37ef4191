"""Amazon SES v2 (``sesv2``) connector: boto3, the account suppression list and one
contact list.

Where opt-outs live at SES:

- the **account suppression list** only knows the reasons ``BOUNCE`` and
  ``COMPLAINT`` (SES adds hard bounces and complaints itself; soft bounces are never
  added). Our complaints and hard bounces go there with ``PutSuppressedDestination``
  (a repeat only refreshes the entry). They are never taken off again by sync;
- **unsubscribes** (and objection, erasure, staff and esp suppressions) go to the
  contact list ``settings.contact_list``: ``UnsubscribeAll`` for a tool-wide opt-out,
  a topic preference ``OPT_OUT`` for a mapped topic. SES documents that
  ``UpdateContact`` *replaces* all topic preferences, so a push reads the contact
  first (``GetContact``), changes only its own topic and writes everything back;
  an unknown contact is created (``CreateContact``);
- a lifted unsubscribe (fresh confirmed opt-in) sets ``UnsubscribeAll`` false or
  the topic back to ``OPT_IN``; complaints and hard bounces are never lifted;
- erasure deletes the contact from the contact list (``DeleteContact``); the
  suppression list entry stays, so SES keeps refusing to mail a bouncing address.

Every management call handles one address (``max_batch = 1``). The SES quota for
API calls other than sending is one request per second per account and region
(short bursts tolerated), so ``max_concurrency`` is a conservative 4; botocore's
standard retry mode backs off on ``TooManyRequestsException``, 5xx, timeouts and
dropped connections.

Pulling reads ``ListSuppressedDestinations`` (``StartDate``/``EndDate`` window,
1000 per page) and scans the contact list with ``ListContacts`` (1000 per page, no
date filter exists, so the whole list is read and contacts updated inside the
window are kept). The stored position is JSON: a watermark per source plus short
fingerprints of what was already returned inside a look-back margin, so clock skew
or entries written while a scan runs are re-read (overlap) rather than lost, and a
repeat pull returns nothing it already returned.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import OptOutKind, RemoteOptOut
from sync.connector import (
    Call,
    CallStats,
    PullPage,
    PushItem,
    Rejection,
    SyncFailed,
    WebhookRejected,
)
from sync.http import RetryPolicy, backoff_delay

SIGNED = False
"""SNS signs its messages with a certificate we cannot fetch offline: SES webhooks
use the ``?key=`` token in the URL, checked centrally."""

PAGE_SIZE = 1000
"""Documented maximum PageSize of ListSuppressedDestinations and ListContacts."""
LOOKBACK_S = 300.0
"""Each pull re-reads this far behind its watermark (clock skew between us and AWS,
entries written while a scan runs); what was already returned is skipped by
fingerprint."""

_SUPPRESSION_REASON = {"complaint": "COMPLAINT", "hard_bounce": "BOUNCE", "soft_bounce": "BOUNCE"}
_LIFTABLE = frozenset({"unsubscribe", "objection", "staff", "esp"})
"""Reasons whose suppression may be undone after a fresh confirmed opt-in."""
_ADDRESSISH = re.compile(r"[^\s<>\"',;:()/]*(@|%40)[^\s<>\"',;:()/]*", re.IGNORECASE)


def _fingerprint(*parts: object) -> str:
    text = "|".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _epoch(value: Any) -> float:
    """A botocore timestamp (aware datetime) or a number as epoch seconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())
    return float(value)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _scrub(text: str, address: str | None = None) -> str:
    """The tool's words without the address (or anything that looks like one)."""
    if address:
        text = re.sub(re.escape(address), "{address}", text, flags=re.IGNORECASE)
    return _ADDRESSISH.sub("{address}", text)


def split_key(settings: ConnectorSettings, api_key: str) -> tuple[str, str, str | None]:
    """``ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`` from the key variable."""
    parts = api_key.strip().split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise SyncFailed(
            f"{settings.name}: ${settings.api_key_env} must hold "
            "ACCESS_KEY_ID:SECRET_ACCESS_KEY (optionally :SESSION_TOKEN)"
        )
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def make_client(
    settings: ConnectorSettings, api_key: str, timeout_s: float, max_attempts: int
) -> Any:
    """A boto3 ``sesv2`` client for these settings. botocore does not retry: the
    connector retries like every other tool (``[sync]`` max_attempts, backoff), so
    ``max_attempts`` is not used here."""
    access_key, secret, token = split_key(settings, api_key)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        max_pool_connections=max(10, SesConnector.max_concurrency * 2),
        user_agent_extra="mailprefs-sync",
    )
    session = boto3.session.Session()
    return session.client(
        "sesv2",
        region_name=settings.region,
        endpoint_url=settings.base_url or None,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=config,
    )


class _Position:
    """Where a pull stands: a watermark (epoch s) and fingerprints per source."""

    def __init__(self, text: str) -> None:
        self.suppressed = 0.0
        self.suppressed_seen: list[str] = []
        self.contacts = 0.0
        self.contacts_seen: list[str] = []
        if not text:
            return
        try:
            data = json.loads(text)
            suppressed, contacts = float(data["s"]), float(data["c"])
            suppressed_seen = [str(f) for f in data["sf"]]
            contacts_seen = [str(f) for f in data["cf"]]
        except (ValueError, TypeError, KeyError):
            return  # not ours: start from the beginning (overlap is harmless, loss not)
        self.suppressed, self.suppressed_seen = suppressed, suppressed_seen
        self.contacts, self.contacts_seen = contacts, contacts_seen

    def encode(self) -> str:
        return json.dumps({"v": 1, "s": self.suppressed, "sf": sorted(self.suppressed_seen),
                           "c": self.contacts, "cf": sorted(self.contacts_seen)},
                          separators=(",", ":"))


class SesConnector:
    """Sync with an Amazon SES v2 account through an injected boto3 ``sesv2`` client.

    Not an :class:`sync.base.HttpConnector`: boto3 signs and retries the requests
    (``make_client``), and each blocking call runs in a worker thread.
    """

    kind = "ses"
    max_batch = 1
    """Every SES management call takes one address."""
    max_concurrency = 4
    """SES allows about 1 management request per second (bursts tolerated);
    botocore backs off when throttled."""
    page_size = PAGE_SIZE

    def __init__(self, settings: ConnectorSettings, client: Any,
                 policy: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.name = settings.name
        self.client = client
        self.stats = CallStats()
        self.topic_map = dict(settings.topic_map)
        self.topic_of = {tool_id: topic for topic, tool_id in self.topic_map.items()}
        self.contact_list = settings.contact_list
        self._locks: dict[str, asyncio.Lock] = {}
        self.policy = policy or RetryPolicy()
        self._max_attempts = self.policy.max_attempts
        self._rng = random.Random()  # noqa: S311 (jitter, not a secret)

    # planning ---------------------------------------------------------------
    def tool_topic(self, item: PushItem) -> str | None:
        """The SES topic name for the item's topic; None: tool-wide (no topic, or a
        topic with no SES counterpart)."""
        if item.topic is None:
            return None
        return self.topic_map.get(item.topic)

    def plan(self, items: Sequence[PushItem]) -> list[Call]:
        calls: list[Call] = []
        for item in items:
            call = self._plan_one(item)
            if call is not None:
                calls.append(call)
        return calls

    def _plan_one(self, item: PushItem) -> Call | None:
        topic = self.tool_topic(item)
        where = f"contact list {self.contact_list}"
        if item.action == "suppress" and item.reason in _SUPPRESSION_REASON:
            reason = _SUPPRESSION_REASON[item.reason]
            return Call("PUT", "PutSuppressedDestination", (item,),
                        json={"EmailAddress": item.address, "Reason": reason},
                        note=f"account suppression list, reason {reason}")
        if item.action == "suppress":
            body = self._contact_body(item, topic, "OPT_OUT")
            what = ("unsubscribe from every topic" if topic is None
                    else f"opt out of topic {topic}")
            return Call("PUT", "UpdateContact", (item,), json=body, note=f"{what} in {where}")
        if item.action == "lift":
            if item.reason not in _LIFTABLE:
                return None  # complaints, hard bounces and erasures are never lifted
            if item.topic is not None and topic is None:
                return None  # pushed tool-wide (no SES topic): lifting would widen it
            body = self._contact_body(item, topic, "OPT_IN")
            what = ("clear unsubscribe-all" if topic is None
                    else f"opt back in to topic {topic}")
            return Call("PUT", "UpdateContact", (item,), json=body,
                        note=f"{what} in {where} (confirmed opt-in)")
        if item.action == "delete":
            if not self.contact_list:
                return None
            return Call("DELETE", "DeleteContact", (item,),
                        json={"ContactListName": self.contact_list,
                              "EmailAddress": item.address},
                        note=f"delete the contact from {where}")
        return None

    def _contact_body(self, item: PushItem, topic: str | None, status: str) -> dict[str, Any]:
        body: dict[str, Any] = {"ContactListName": self.contact_list,
                                "EmailAddress": item.address}
        if topic is None:
            body["UnsubscribeAll"] = status == "OPT_OUT"
        else:
            body["TopicPreferences"] = [{"TopicName": topic, "SubscriptionStatus": status}]
        return body

    # sending ------------------------------------------------------------------
    async def send(self, call: Call) -> list[Rejection]:
        item = call.items[0]
        try:
            if call.path == "PutSuppressedDestination":
                await self._invoke("put_suppressed_destination", call.json, item.address)
            elif call.path == "UpdateContact":
                await self._change_contact(call, item)
            elif call.path == "DeleteContact":
                await self._delete_contact(call, item)
            else:
                raise SyncFailed(f"{self.name}: unknown SES operation {call.path}")
        except ClientError as exc:
            return self._rejection_or_raise(call, item, exc)
        return []

    def _rejection_or_raise(self, call: Call, item: PushItem,
                            exc: ClientError) -> list[Rejection]:
        code, message, status = _error_of(exc)
        problem = _scrub(f"{code}: {message}", item.address)
        if status == 400 and code == "BadRequestException" and _about_address(message, item):
            return [Rejection(item, problem)]
        raise SyncFailed(f"{self.name}: {call.path}: HTTP {status}: {problem}") from None

    async def _change_contact(self, call: Call, item: PushItem) -> None:
        if not self.contact_list:
            raise SyncFailed(f"{self.name}: contact_list is not set, so unsubscribes cannot be "
                             "pushed to SES")
        want: dict[str, Any] = call.json
        lifting = item.action == "lift"
        lock = self._locks.setdefault(item.address.lower(), asyncio.Lock())
        async with lock:  # read-modify-write of one contact: one at a time
            for _ in range(4):
                ident = {"ContactListName": self.contact_list, "EmailAddress": item.address}
                try:
                    current = await self._invoke("get_contact", ident, item.address)
                except ClientError as exc:
                    if _error_of(exc)[0] != "NotFoundException":
                        raise
                    current = None
                if current is None:
                    if lifting:
                        return  # nothing to undo at SES
                    try:
                        await self._invoke("create_contact", want, item.address)
                    except ClientError as exc:
                        code, message, _ = _error_of(exc)
                        if code == "AlreadyExistsException":
                            continue  # created meanwhile (or by our own lost answer)
                        if code == "NotFoundException":
                            raise SyncFailed(
                                f"{self.name}: contact list {self.contact_list} does not "
                                f"exist at SES ({_scrub(message, item.address)})") from None
                        raise
                    return
                update = _merged(current, want)
                if update is None:
                    return  # already as wanted: nothing to send
                try:
                    await self._invoke("update_contact", update, item.address)
                except ClientError as exc:
                    if _error_of(exc)[0] == "NotFoundException":
                        continue  # deleted meanwhile: read again
                    raise
                return
        raise SyncFailed(f"{self.name}: UpdateContact: the contact kept changing at SES")

    async def _delete_contact(self, call: Call, item: PushItem) -> None:
        try:
            await self._invoke("delete_contact", call.json, item.address)
        except ClientError as exc:
            if _error_of(exc)[0] != "NotFoundException":
                raise
            # Already gone (or never there): erased either way.

    async def _invoke(self, operation: str, params: Mapping[str, Any],
                      address: str | None = None) -> dict[str, Any]:
        """One boto3 call in a worker thread, retried like every other tool's requests
        (sync/http.py's policy: throttling and 5xx, timeouts, dropped connections)."""
        method: Callable[..., dict[str, Any]] = getattr(self.client, operation)
        problem = ""
        for attempt in range(self._max_attempts):
            if attempt:
                self.stats.retries += 1
                delay = backoff_delay(self.policy, attempt - 1, self._rng)
                self.stats.waited_s += delay
                await asyncio.sleep(delay)
            self.stats.requests += 1
            try:
                return await asyncio.to_thread(method, **params)
            except ClientError as exc:
                code, _message, status = _error_of(exc)
                if status in (401, 403):
                    raise SyncFailed(
                        f"{self.name}: {_operation_name(operation)}: HTTP {status}: SES "
                        f"refused the credentials (from ${self.settings.api_key_env}): {code}"
                    ) from None
                if status == 429 or status >= 500:
                    problem = f"HTTP {status} {code}"
                    continue
                raise
            except BotoCoreError as exc:
                problem = _scrub(type(exc).__name__, address)
                continue
        raise SyncFailed(
            f"{self.name}: {_operation_name(operation)}: {problem} after "
            f"{self._max_attempts} attempts"
        )

    # pulling ------------------------------------------------------------------
    async def pull(self, position: str, until: datetime) -> AsyncIterator[PullPage]:
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        end = until.timestamp()
        pos = _Position(position)
        now = datetime.now(UTC).timestamp()

        # 1. bounces and complaints from the account suppression list
        if end > pos.suppressed:
            start = pos.suppressed - LOOKBACK_S if pos.suppressed > 0 else None
            new_mark = max(pos.suppressed, min(end, now))
            seen = set(pos.suppressed_seen)
            keep: list[str] = []
            pages = self._suppressed_pages(start, until)
            async for summaries, last in pages:
                opt_outs = []
                for summary in summaries:
                    ts = _epoch(summary["LastUpdateTime"])
                    if ts > end:
                        continue
                    fp = _fingerprint(summary["EmailAddress"].lower(), summary["Reason"],
                                      f"{ts:.6f}")
                    if ts > new_mark - LOOKBACK_S:
                        keep.append(fp)
                    if fp in seen:
                        continue
                    opt_outs.append(self._suppressed_opt_out(summary, ts))
                if last:
                    pos.suppressed, pos.suppressed_seen = new_mark, keep
                yield PullPage(opt_outs, pos.encode())

        # 2. unsubscribes from the contact list
        if self.contact_list and end > pos.contacts:
            floor = pos.contacts - LOOKBACK_S if pos.contacts > 0 else None
            new_mark = max(pos.contacts, min(end, now))
            seen = set(pos.contacts_seen)
            keep = []
            async for contacts, last in self._contact_pages():
                opt_outs = []
                for contact in contacts:
                    found = self._contact_opt_outs(contact)
                    if not found:
                        continue
                    ts = _epoch(contact["LastUpdatedTimestamp"])
                    if ts > end or (floor is not None and ts < floor):
                        continue
                    fp = _fingerprint(contact["EmailAddress"].lower(), f"{ts:.6f}")
                    if ts > new_mark - LOOKBACK_S:
                        keep.append(fp)
                    if fp in seen:
                        continue
                    opt_outs.extend(found)
                if last:
                    pos.contacts, pos.contacts_seen = new_mark, keep
                yield PullPage(opt_outs, pos.encode())

    async def _suppressed_pages(
        self, start: float | None, until: datetime
    ) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
        params: dict[str, Any] = {"EndDate": until, "PageSize": self.page_size}
        if start is not None:
            params["StartDate"] = _utc(start)
        while True:
            response = await self._invoke_pull("list_suppressed_destinations", params)
            token = response.get("NextToken")
            yield response.get("SuppressedDestinationSummaries", []), not token
            if not token:
                return
            params = {**params, "NextToken": token}

    async def _contact_pages(self) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
        # No Filter: the whole list is read either way (SES filters inside each page
        # and may answer empty pages with a NextToken), and one unfiltered scan sees
        # both UnsubscribeAll and every topic's OPT_OUT.
        params: dict[str, Any] = {"ContactListName": self.contact_list,
                                  "PageSize": self.page_size}
        while True:
            response = await self._invoke_pull("list_contacts", params)
            token = response.get("NextToken")
            yield response.get("Contacts", []), not token
            if not token:
                return
            params = {**params, "NextToken": token}

    async def _invoke_pull(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return await self._invoke(operation, params)
        except ClientError as exc:
            code, message, status = _error_of(exc)
            raise SyncFailed(f"{self.name}: {_operation_name(operation)}: HTTP {status}: "
                             f"{_scrub(f'{code}: {message}')}") from None

    def _suppressed_opt_out(self, summary: Mapping[str, Any], ts: float) -> RemoteOptOut:
        kind: OptOutKind = "hard_bounce" if summary["Reason"] == "BOUNCE" else "complaint"
        record = {"source": "ListSuppressedDestinations",
                  "EmailAddress": str(summary["EmailAddress"]),
                  "Reason": str(summary["Reason"]),
                  "LastUpdateTime": _utc(ts).isoformat()}
        return RemoteOptOut(address=str(summary["EmailAddress"]), kind=kind, topic=None,
                            at=_utc(ts), record=record)

    def _contact_opt_outs(self, contact: Mapping[str, Any]) -> list[RemoteOptOut]:
        """UnsubscribeAll: one tool-wide unsubscribe; otherwise one per mapped topic
        the contact opted out of (topics we do not map are not ours to record)."""
        address = str(contact.get("EmailAddress", ""))
        raw_ts = contact.get("LastUpdatedTimestamp")
        at = _utc(_epoch(raw_ts)) if raw_ts is not None else None
        base = {"source": "ListContacts", "ContactListName": self.contact_list,
                "EmailAddress": address,
                "LastUpdatedTimestamp": at.isoformat() if at else ""}
        if contact.get("UnsubscribeAll"):
            record = {**base, "UnsubscribeAll": "true"}
            return [RemoteOptOut(address=address, kind="unsubscribe", topic=None, at=at,
                                 record=record)]
        out = []
        for pref in contact.get("TopicPreferences") or []:
            if pref.get("SubscriptionStatus") != "OPT_OUT":
                continue
            ours = self.topic_of.get(str(pref.get("TopicName")))
            if ours is None:
                continue
            record = {**base, "UnsubscribeAll": "false", "TopicName": str(pref["TopicName"]),
                      "SubscriptionStatus": "OPT_OUT"}
            out.append(RemoteOptOut(address=address, kind="unsubscribe", topic=ours, at=at,
                                    record=record))
        return out

    async def aclose(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


def _merged(current: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, Any] | None:
    """The full UpdateContact body that applies ``want`` to ``current`` (SES replaces all
    topic preferences on update), or None when nothing would change."""
    prefs = {str(p["TopicName"]): str(p["SubscriptionStatus"])
             for p in current.get("TopicPreferences") or []}
    unsubscribe_all = bool(current.get("UnsubscribeAll", False))
    new_prefs = dict(prefs)
    for pref in want.get("TopicPreferences") or []:
        new_prefs[str(pref["TopicName"])] = str(pref["SubscriptionStatus"])
    new_all = bool(want["UnsubscribeAll"]) if "UnsubscribeAll" in want else unsubscribe_all
    if new_prefs == prefs and new_all == unsubscribe_all:
        return None
    body: dict[str, Any] = {
        "ContactListName": want["ContactListName"],
        "EmailAddress": want["EmailAddress"],
        "TopicPreferences": [{"TopicName": t, "SubscriptionStatus": s}
                             for t, s in new_prefs.items()],
        "UnsubscribeAll": new_all,
    }
    if current.get("AttributesData"):
        body["AttributesData"] = current["AttributesData"]
    return body


def _error_of(exc: ClientError) -> tuple[str, str, int]:
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(error.get("Code", "")), str(error.get("Message", "")), status


def _about_address(message: str, item: PushItem) -> bool:
    """A 400 about the one address (invalid or refused), not about the request."""
    lowered = message.lower()
    return (item.address.lower() in lowered or "email address" in lowered
            or "emailaddress" in lowered)


def _operation_name(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


# webhooks ---------------------------------------------------------------------
_SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})
_CERT_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]*\.pem$")


def parse_webhook(
    settings: ConnectorSettings,
    key: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    now: float,
) -> list[RemoteOptOut]:
    """SES events delivered by SNS (HTTP/S subscription): hard bounces, complaints and
    list-management unsubscribes (``Subscription`` events). The ``?key=`` token is
    checked centrally (``SIGNED`` is False). SNS confirmations give nothing: the
    operator confirms the subscription."""
    del key, query  # the URL token is checked before this is called
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(message, dict):
        raise WebhookRejected(400, "body is not an SNS message")
    if "Type" in message:
        event = _sns_event(headers, message)
        if event is None:
            return []
        envelope = {"SnsMessageId": str(message.get("MessageId", "")),
                    "SnsTopicArn": str(message.get("TopicArn", ""))}
    elif headers.get("x-amz-sns-rawdelivery", "").lower() == "true":
        event, envelope = message, {}
    else:
        raise WebhookRejected(400, "body is not an SNS message")
    return _event_opt_outs(settings, event, envelope, now)


def _sns_event(headers: Mapping[str, str], message: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = message.get("Type")
    if kind not in _SNS_TYPES:
        raise WebhookRejected(400, "unknown SNS message type")
    sent_as = headers.get("x-amz-sns-message-type")
    if sent_as is not None and sent_as != kind:
        raise WebhookRejected(400, "SNS message type header and body disagree")
    for field in ("MessageId", "TopicArn", "Message", "Timestamp", "Signature",
                  "SignatureVersion", "SigningCertURL"):
        if not isinstance(message.get(field), str):
            raise WebhookRejected(400, f"SNS message without {field}")
    if not str(message["TopicArn"]).startswith("arn:aws"):
        raise WebhookRejected(400, "SNS message with a malformed TopicArn")
    topic_header = headers.get("x-amz-sns-topic-arn")
    if topic_header is not None and topic_header != message["TopicArn"]:
        raise WebhookRejected(400, "SNS topic header and body disagree")
    if not _CERT_URL.match(str(message["SigningCertURL"])):
        raise WebhookRejected(401, "SNS message not signed with an SNS certificate")
    if kind != "Notification":
        return None  # subscription (un)confirmations: the operator confirms them
    try:
        event = json.loads(str(message["Message"]))
    except ValueError:
        raise WebhookRejected(400, "SNS notification is not an SES event") from None
    if not isinstance(event, dict):
        raise WebhookRejected(400, "SNS notification is not an SES event")
    return event


def _when(value: Any, now: float) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return _utc(now)


def _flat(data: Mapping[str, Any], into: dict[str, str]) -> None:
    """Copy the scalar fields of an event section as strings (evidence)."""
    for name, value in data.items():
        if isinstance(value, bool):
            into[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            into[name] = str(value)


def _event_opt_outs(settings: ConnectorSettings, event: Mapping[str, Any],
                    envelope: Mapping[str, str], now: float) -> list[RemoteOptOut]:
    kind = event.get("eventType", event.get("notificationType"))
    if not isinstance(kind, str):
        raise WebhookRejected(400, "SNS notification is not an SES event")
    mail = event.get("mail")
    mail = mail if isinstance(mail, dict) else {}
    base: dict[str, str] = {**envelope, "eventType": kind}
    if isinstance(mail.get("messageId"), str):
        base["messageId"] = mail["messageId"]
    if kind == "Bounce":
        return _bounces(event, base, now)
    if kind == "Complaint":
        return _complaints(event, base, now)
    if kind == "Subscription":
        return _subscription(settings, event, mail, base, now)
    return []  # deliveries, sends, opens, clicks, soft-bounce delays...


def _recipients(section: Mapping[str, Any], field: str) -> Iterator[Mapping[str, Any]]:
    listed = section.get(field)
    if not isinstance(listed, list):
        raise WebhookRejected(400, f"SES event without {field}")
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("emailAddress"), str):
            raise WebhookRejected(400, f"SES event with a malformed {field} entry")
        yield entry


def _bounces(event: Mapping[str, Any], base: dict[str, str], now: float) -> list[RemoteOptOut]:
    bounce = event.get("bounce")
    if not isinstance(bounce, dict) or not isinstance(bounce.get("bounceType"), str):
        raise WebhookRejected(400, "SES bounce event without bounce details")
    recipients = list(_recipients(bounce, "bouncedRecipients"))
    if bounce["bounceType"] != "Permanent":
        return []  # Transient and Undetermined bounces are not hard bounces
    return _per_recipient(bounce, recipients, "hard_bounce", base, now)


def _complaints(event: Mapping[str, Any], base: dict[str, str],
                now: float) -> list[RemoteOptOut]:
    complaint = event.get("complaint")
    if not isinstance(complaint, dict):
        raise WebhookRejected(400, "SES complaint event without complaint details")
    recipients = list(_recipients(complaint, "complainedRecipients"))
    if complaint.get("complaintFeedbackType") == "not-spam":
        return []  # the recipient said it is *not* spam
    return _per_recipient(complaint, recipients, "complaint", base, now)


def _per_recipient(section: Mapping[str, Any], recipients: list[Any], kind: OptOutKind,
                   base: dict[str, str], now: float) -> list[RemoteOptOut]:
    """One opt-out per recipient of a bounce or complaint, the event as evidence."""
    at = _when(section.get("timestamp"), now)
    out = []
    for recipient in recipients:
        record = dict(base)
        _flat(section, record)
        _flat(recipient, record)
        out.append(RemoteOptOut(address=recipient["emailAddress"], kind=kind,
                                topic=None, at=at, record=record))
    return out


def _subscription(settings: ConnectorSettings, event: Mapping[str, Any],
                  mail: Mapping[str, Any], base: dict[str, str],
                  now: float) -> list[RemoteOptOut]:
    """A list-management change (one-click header or the SES preference page)."""
    sub = event.get("subscription")
    if not isinstance(sub, dict) or not isinstance(sub.get("newTopicPreferences"), dict):
        raise WebhookRejected(400, "SES subscription event without topic preferences")
    destination = mail.get("destination")
    if not isinstance(destination, list) or not all(isinstance(d, str) for d in destination):
        raise WebhookRejected(400, "SES subscription event without mail.destination")
    if settings.contact_list and sub.get("contactList") not in (None, settings.contact_list):
        return []  # another contact list: not the one this connector keeps in step
    new = sub["newTopicPreferences"]
    old_raw = sub.get("oldTopicPreferences")
    old: Mapping[str, Any] = old_raw if isinstance(old_raw, dict) else {}
    at = _when(sub.get("timestamp"), now)
    record = dict(base)
    _flat(sub, record)
    topic_of = {tool: ours for ours, tool in settings.topic_map.items()}
    found: list[tuple[str | None, dict[str, str]]] = []
    if new.get("unsubscribeAll") is True:
        if not old.get("unsubscribeAll"):
            found.append((None, {**record, "unsubscribeAll": "true"}))
    else:
        before = {str(t.get("topicName")): t.get("subscriptionStatus")
                  for t in old.get("topicSubscriptionStatus") or [] if isinstance(t, dict)}
        for entry in new.get("topicSubscriptionStatus") or []:
            if not isinstance(entry, dict) or entry.get("subscriptionStatus") != "OptOut":
                continue
            name = str(entry.get("topicName"))
            if before.get(name) == "OptOut" or name not in topic_of:
                continue
            found.append((topic_of[name], {**record, "topicName": name,
                                           "subscriptionStatus": "OptOut"}))
    return [RemoteOptOut(address=address, kind="unsubscribe", topic=topic, at=at,
                         record=rec)
            for address in destination for topic, rec in found]
