"""What happens to a message of the privacy mailbox once it is classified.

:func:`ingest_in` runs inside one store transaction: it stores the message once (by
Message-ID, else a hash of its bytes) and applies what is safe to apply without a
human, so the message and its effect are committed together or not at all:

- a valid tokenised ``List-Unsubscribe`` mailto: unsubscribe (channel ``mailto``);
- a bounce, per failed recipient: hard (the address itself fails: no such user, unknown
  domain, mailbox disabled) suppresses it at once (reason ``hard_bounce``); soft
  (mailbox full, policy, reputation, temporary, ...) is recorded, and the
  ``SoftBounceLimit.limit``-th soft bounce within ``days`` days suppresses it (reason
  ``soft_bounce``); neither is ever lifted automatically;
- a complaint (a feedback-loop / abuse report): each reported recipient we know
  (a contact or a history under its keyed hash) is suppressed (reason ``complaint``);
  never the reporter, and never a new contact; nobody known: queued;
- an auto-reply: ignored (never an unsubscribe);
- an unsubscribe written by the person themselves, from an authenticated sender
  naming no one else: unsubscribe from everything (channel ``mailbox``);
- everything else waits in the review queue; rights requests carry a due date one
  month after receipt (GDPR Art. 12(3)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from suppression.addresses import InvalidAddress, normalise
from suppression.hashing import AddressHasher
from suppression.ledger import Bounced, Complained, Evidence, StoredEvent, Suppressed, decode_event
from suppression.replies import Classification, due_date
from suppression.store import NewInboxItem, Tx
from suppression.subscriptions import Who, unsubscribe
from suppression.suppression_list import Actor, ensure_contact_in
from suppression.tokens import Purpose, TokenError, Tokens

RIGHTS_KINDS = frozenset({"rights_access", "rights_rectify", "rights_erase", "rights_object"})
SUGGESTED = {
    "unsubscribe": "unsubscribe",
    "mailto_unsubscribe": "unsubscribe",
    "rights_access": "export",
    "rights_rectify": "rectify",
    "rights_erase": "forget",
    "rights_object": "object",
    "bounce": "bounce",
    "complaint": "complaint",
    "auto_reply": "ignore",
    "other": "read",
}


@dataclass
class Acknowledgement:
    """A mail to send once the transaction committed (the person's language)."""

    address: str
    language: str | None


@dataclass
class Ingested:
    duplicate: bool = False
    item_id: int | None = None
    state: str = ""
    kind: str = ""
    events: int = 0
    acknowledgements: list[Acknowledgement] = field(default_factory=list)


def _hashes(hasher: AddressHasher, addresses: list[str]) -> list[bytes]:
    out = []
    for address in addresses:
        try:
            out.append(hasher.addr_hash(normalise(address)))
        except InvalidAddress:
            continue
    return out


def ingest_in(
    tx: Tx,
    c: Classification,
    raw: bytes,
    *,
    hasher: AddressHasher,
    tokens: Tokens,
    now: datetime,
    own_addresses: frozenset[str] = frozenset(),
    soft_bounces: SoftBounceLimit | None = None,
) -> Ingested:
    """Store one classified message and apply what needs no human (see module doc)."""
    received = _received(c, now)
    addresses = [a for a in c.addresses if a.lower() not in own_addresses]
    for failure in c.failures:  # every failed recipient is named by the stored message
        if failure.address.lower() not in own_addresses and failure.address not in addresses:
            addresses.append(failure.address)
    item = NewInboxItem(
        message_id=c.message_id, received_at=c.received_at, ingested_at=now.isoformat(),
        kind=c.kind, automatic=c.automatic, state="queued",
        suggested=SUGGESTED.get(c.kind, "read"), sender=c.sender, addresses=addresses,
        language=c.language, subject=c.subject, body=c.text, raw=raw,
        reasons=list(c.reasons),
        due_date=due_date(received).isoformat() if c.kind in RIGHTS_KINDS else None,
    )
    names = _hashes(hasher, [*addresses, *([c.sender] if c.sender else [])])
    item_id = tx.add_inbox(item, names)
    if item_id is None:
        return Ingested(duplicate=True)
    result = Ingested(item_id=item_id, kind=c.kind)
    evidence = Evidence(message_id=c.message_id, note=f"privacy mailbox: {c.kind}")
    state, decision = _apply(tx, c, addresses, hasher, tokens, now, evidence, result,
                             soft_bounces or SoftBounceLimit(), own_addresses)
    if state != "queued":
        tx.set_inbox_state(item_id, state, "system", now.isoformat(), decision)
    result.state = state
    return result


def _apply(tx: Tx, c: Classification, addresses: list[str], hasher: AddressHasher,
           tokens: Tokens, now: datetime, evidence: Evidence, result: Ingested,
           limits: SoftBounceLimit, own_addresses: frozenset[str]) -> tuple[str, str]:
    """(state, decision) after doing what is safe without a human."""
    if c.kind == "auto_reply":
        return "ignored", "auto-reply"
    if c.kind == "mailto_unsubscribe":
        return _mailto(tx, c, tokens, now, evidence, result)
    if c.kind == "complaint":
        return _complaint(tx, c, addresses, hasher, now, result)
    if c.kind == "bounce":
        failures = _failures(c, own_addresses)
        if not c.automatic or not failures:
            return "queued", ""
        when = min(_received(c, now), now)
        return _bounces(tx, failures, hasher, now, when, evidence, result, limits)
    if c.kind == "unsubscribe" and c.automatic and c.sender:
        who = Who(channel="mailbox", actor="recipient", evidence=evidence, at=now)
        normal = normalise(c.sender)
        contact = ensure_contact_in(tx, normal, hasher.addr_hash(normal), now,
                                    Actor("mailbox", "recipient", evidence), None, None,
                                    "person", "mailbox")
        if unsubscribe(tx, contact.id, None, who).changed:
            result.events += 1
        result.acknowledgements.append(Acknowledgement(normal, c.language or contact.language))
        return "applied", "unsubscribed from everything"
    return "queued", ""


def _mailto(tx: Tx, c: Classification, tokens: Tokens, now: datetime, evidence: Evidence,
            result: Ingested) -> tuple[str, str]:
    try:
        payload = tokens.verify(Purpose.MAILTO, c.token or "")
    except TokenError:
        return "queued", ""
    contact = tx.contact(payload.contact_id)
    if contact is None or contact.address is None:
        return "queued", ""
    who = Who(channel="mailto", actor="recipient", evidence=evidence, at=now)
    if unsubscribe(tx, contact.id, payload.topic, who).changed:
        result.events += 1
    result.acknowledgements.append(Acknowledgement(contact.address, contact.language))
    return "applied", "unsubscribed" + (f" from {payload.topic}" if payload.topic else "")


# complaints ---------------------------------------------------------------------------
def _complaint(tx: Tx, c: Classification, addresses: list[str], hasher: AddressHasher,
               now: datetime, result: Ingested) -> tuple[str, str]:
    """Suppress every reported recipient we know (a contact, or a history under its
    keyed hash); never create a contact. Nobody known: a person looks at it."""
    evidence = Evidence(message_id=c.message_id, note="privacy mailbox: complaint report")
    known = suppressed = already = 0
    for addr_hash in dict.fromkeys(_hashes(hasher, addresses)):
        contact = tx.contact_by_hash(addr_hash)
        existing = tx.suppressions([addr_hash])
        if contact is None and not existing and not tx.hash_has_events(addr_hash.hex()):
            continue
        known += 1
        if any(s.scope == "global" and s.reason in ("complaint", "erasure")
               for s in existing):
            already += 1
            continue
        tx.append(Complained(at=now, channel="complaint", actor="system",
                             addr_hash=addr_hash.hex(),
                             contact_id=contact.id if contact else None), evidence)
        result.events += 1
        suppressed += 1
    if not known:
        return "queued", ""
    decision = f"complaint: {suppressed} recipient(s) suppressed"
    return "applied", decision + (f", {already} already" if already else "")


# bounces ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SoftBounceLimit:
    """``limit`` soft bounces of one address within ``days`` days suppress it."""

    limit: int = 3
    days: int = 30


@dataclass(frozen=True)
class _Failure:
    address: str
    permanent: bool
    status: str | None
    cause: str | None


def _failures(c: Classification, own_addresses: frozenset[str]) -> list[_Failure]:
    """Each failed recipient's verdict; from the old whole-message verdict
    (``bounce_permanent`` for every address) when the report gives none per recipient."""
    if c.failures:
        found = [_Failure(f.address, f.permanent, f.status, f.cause) for f in c.failures]
    elif c.bounce_permanent is not None:
        found = [_Failure(a, c.bounce_permanent, c.bounce_status, None) for a in c.addresses]
    else:
        found = []
    return [f for f in found if f.address.lower() not in own_addresses]


def _bounces(tx: Tx, failures: list[_Failure], hasher: AddressHasher, now: datetime,
             when: datetime, evidence: Evidence, result: Ingested, limits: SoftBounceLimit
             ) -> tuple[str, str]:
    """``when``: the time of the report (its Date), for counting soft bounces, so an
    archive of old bounces ingested at once counts them as they happened."""
    hard = soft = over_limit = 0
    for failure in failures:
        try:
            normal = normalise(failure.address)
        except InvalidAddress:
            continue
        addr_hash = hasher.addr_hash(normal)
        if failure.permanent:
            hard += 1
            result.events += _hard_bounce(tx, normal, addr_hash, failure, now, evidence)
        else:
            soft += 1
            events, limited = _soft_bounce(tx, addr_hash, failure, now, when, evidence,
                                           limits)
            result.events += events
            over_limit += limited
    if not hard and not soft:
        return "queued", ""
    parts = [f"{hard} hard bounce(s)"] if hard else []
    if soft:
        parts.append(f"{soft} soft bounce(s)" + (
            f", {over_limit} suppressed after {limits.limit} in {limits.days} days"
            if over_limit else ""))
    return ("applied" if hard or over_limit else "recorded"), "; ".join(parts)


def _hard_bounce(tx: Tx, normal: str, addr_hash: bytes, failure: _Failure, now: datetime,
                 evidence: Evidence) -> int:
    existing = tx.suppressions([addr_hash])
    if any(s.reason == "erasure" for s in existing):
        return 0
    if any(s.scope == "global" and s.reason == "hard_bounce" for s in existing):
        return 0
    contact = ensure_contact_in(tx, normal, addr_hash, now,
                                Actor("mailbox", "system", evidence), None, None,
                                "person", "mailbox")
    tx.append(Bounced(at=now, channel="mailbox", actor="system", addr_hash=addr_hash.hex(),
                      permanent=True, status=failure.status, cause=failure.cause,
                      contact_id=contact.id), evidence)
    return 1


def _soft_bounce(tx: Tx, addr_hash: bytes, failure: _Failure, now: datetime,
                 when: datetime, evidence: Evidence, limits: SoftBounceLimit
                 ) -> tuple[int, int]:
    """(events appended, 1 if this bounce reached the limit and suppressed)."""
    existing = tx.suppressions([addr_hash])
    if any(s.reason == "erasure" for s in existing):
        return 0, 0
    contact = tx.contact_by_hash(addr_hash)
    contact_id = contact.id if contact else None
    hexhash = addr_hash.hex()
    tx.append(Bounced(at=now, channel="mailbox", actor="system", addr_hash=hexhash,
                      permanent=False, status=failure.status, cause=failure.cause,
                      contact_id=contact_id, failed_at=when if when < now else None),
              evidence)
    if any(s.scope == "global" and s.reason in ("hard_bounce", "soft_bounce")
           for s in existing):
        return 1, 0
    times = sorted(_soft_times(tx.bounces_of(contact_id, hexhash)))
    count = _most_in_a_window(times, when, timedelta(days=limits.days))
    if count < limits.limit:
        return 1, 0
    tx.append(Suppressed(at=now, channel="mailbox", actor="system", addr_hash=hexhash,
                         scope="global", reason="soft_bounce", contact_id=contact_id),
              Evidence(message_id=evidence.message_id,
                       note=f"privacy mailbox: {count} soft bounces within "
                            f"{limits.days} days (limit {limits.limit})"))
    return 2, 1


def _soft_times(rows: list[StoredEvent]) -> list[datetime]:
    """When each soft bounce happened (the report's date, else when it was recorded)."""
    times = []
    for row in rows:
        event = decode_event(row.payload)
        if isinstance(event, Bounced) and not event.permanent:
            times.append(event.failed_at or event.at)
    return times


def _most_in_a_window(times: list[datetime], when: datetime, days: timedelta) -> int:
    """The most soft bounces in any window of ``days`` that contains ``when`` (bounces
    of an archive can arrive out of order; in order, the window simply ends now)."""
    best = 0
    for start in times:
        if when - days <= start <= when:
            best = max(best, sum(1 for t in times if start <= t <= start + days))
    return best


def _received(c: Classification, now: datetime) -> datetime:
    if c.received_at:
        try:
            parsed = datetime.fromisoformat(c.received_at.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return now
