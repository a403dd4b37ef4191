"""What happens to a message of the privacy mailbox once it is classified.

:func:`ingest_in` runs inside one store transaction: it stores the message once (by
Message-ID, else a hash of its bytes) and applies what is safe to apply without a
human, so the message and its effect are committed together or not at all:

- a valid tokenised ``List-Unsubscribe`` mailto: unsubscribe (channel ``mailto``);
- a permanent bounce (5.x.x): a hard-bounce suppression of each failed recipient;
  a temporary one (4.x.x) is recorded and suppresses nothing;
- an auto-reply: ignored (never an unsubscribe);
- an unsubscribe written by the person themselves, from an authenticated sender
  naming no one else: unsubscribe from everything (channel ``mailbox``);
- everything else waits in the review queue; rights requests carry a due date one
  month after receipt (GDPR Art. 12(3)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from suppression.addresses import InvalidAddress, normalise
from suppression.hashing import AddressHasher
from suppression.ledger import Bounced, Evidence
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
) -> Ingested:
    """Store one classified message and apply what needs no human (see module doc)."""
    received = _received(c, now)
    addresses = [a for a in c.addresses if a.lower() not in own_addresses]
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
    state, decision = _apply(tx, c, addresses, hasher, tokens, now, evidence, result)
    if state != "queued":
        tx.set_inbox_state(item_id, state, "system", now.isoformat(), decision)
    result.state = state
    return result


def _apply(tx: Tx, c: Classification, addresses: list[str], hasher: AddressHasher,
           tokens: Tokens, now: datetime, evidence: Evidence, result: Ingested
           ) -> tuple[str, str]:
    """(state, decision) after doing what is safe without a human."""
    if c.kind == "auto_reply":
        return "ignored", "auto-reply"
    if c.kind == "mailto_unsubscribe":
        return _mailto(tx, c, tokens, now, evidence, result)
    if c.kind == "bounce" and c.automatic and c.bounce_permanent is not None:
        for address in addresses:
            _bounce(tx, address, c, hasher, now, evidence)
            result.events += 1
        return ("applied", "hard bounce") if c.bounce_permanent else ("recorded",
                                                                      "temporary bounce")
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


def _bounce(tx: Tx, address: str, c: Classification, hasher: AddressHasher, now: datetime,
            evidence: Evidence) -> None:
    normal = normalise(address)
    addr_hash = hasher.addr_hash(normal)
    if c.bounce_permanent:
        existing = tx.suppressions([addr_hash])
        if any(s.reason == "erasure" for s in existing):
            return
        if any(s.scope == "global" and s.reason == "hard_bounce" for s in existing):
            return
    contact = tx.contact_by_hash(addr_hash)
    if contact is None and c.bounce_permanent:
        contact = ensure_contact_in(tx, normal, addr_hash, now,
                                    Actor("mailbox", "system", evidence), None, None,
                                    "person", "mailbox")
    tx.append(Bounced(at=now, channel="mailbox", actor="system", addr_hash=addr_hash.hex(),
                      permanent=bool(c.bounce_permanent), status=c.bounce_status,
                      contact_id=contact.id if contact else None), evidence)


def _received(c: Classification, now: datetime) -> datetime:
    if c.received_at:
        try:
            parsed = datetime.fromisoformat(c.received_at.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return now
