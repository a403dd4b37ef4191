"""Data-subject rights: export everything held about a person, rectify an address,
erase a person (GDPR Art. 15, 16, 17).

Erasure keeps the ledger verifiable: event payloads never hold an address (only its
keyed hash), the personal evidence that does is stored apart and deleted, and the
chain covers only its digest. What stays is the keyed-hash suppression (reason
``erasure``), so the person is never mailed or imported again, and a tombstone.
The address is kept, per mailing tool that can delete contacts, only until sync has
deleted it there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from suppression.addresses import normalise
from suppression.hashing import AddressHasher
from suppression.ledger import (
    Bounced,
    Erased,
    Evidence,
    StoredEvent,
    Subscribed,
    Suppressed,
    Unsubscribed,
    decode_event,
)
from suppression.store import Contact, Store, Tx
from suppression.suppression_list import Actor, ensure_contact_in

# Suppressions that follow a person to their new address (a bounce is about the old
# mailbox, not a wish of the person).
_FOLLOWS = frozenset({"unsubscribe", "objection", "complaint", "staff", "esp"})


class UnknownPerson(LookupError):
    """No contact, suppression or message is held for this address."""


async def export(store: Store, hasher: AddressHasher, address: str) -> dict[str, Any]:
    """Everything held about the person, as JSON-ready data."""
    normal = normalise(address)
    addr_hash = hasher.addr_hash(normal)
    contact = await store.contact_by_hash(addr_hash)
    suppressions = await store.suppressions([addr_hash])
    if contact is not None and contact.erased_at is not None:
        return {"address": normal, "tombstone": True, "erased_at": contact.erased_at,
                "held": "only a keyed hash of the address, so it is never mailed or "
                        "imported again"}
    if contact is None and any(s.reason == "erasure" for s in suppressions):
        return {"address": normal, "tombstone": True,
                "held": "only a keyed hash of the address"}
    events = await store.events_of(contact.id if contact else None, addr_hash.hex())
    evidence = await store.evidence_of([e.seq for e in events])
    own = await store.added_evidence(contact.id) if contact else None
    inbox = await store.inbox_of(addr_hash)
    if contact is None and not suppressions and not events and not inbox:
        raise UnknownPerson("nothing is held about this address")
    return {
        "address": normal,
        "tombstone": False,
        "contact": msgspec.to_builtins(contact) if contact else None,
        "subscriptions": [msgspec.to_builtins(s) for s in
                          (await store.subscriptions(contact.id) if contact else [])],
        "suppressions": [{"scope": s.scope, "reason": s.reason, "since": s.since,
                          "channel": s.channel} for s in suppressions],
        "bounces": _bounces(events),
        "events": [_exported(e, evidence.get(e.seq), contact, own) for e in events],
        "messages": [{
            "id": m.id, "received_at": m.received_at, "kind": m.kind, "state": m.state,
            "subject": m.subject, "text": m.body,
        } for m in inbox],
    }


def _exported(e: StoredEvent, evidence: bytes | None, contact: Contact | None,
              own: bytes | None) -> dict[str, Any]:
    """One ledger event as the person may see it. A ContactsAdded batch also lists other
    people: only this person's entry is shown, with their own evidence (the batch's note,
    which names the file, next to it)."""
    event = json.loads(e.payload)
    shown_evidence = json.loads(evidence) if evidence is not None else None
    if e.type == "ContactsAdded" and contact is not None:
        event["contacts"] = [c for c in event.get("contacts", [])
                             if c.get("contact_id") == contact.id]
        shown_evidence = {"batch": shown_evidence,
                          "contact": json.loads(own) if own is not None else None}
    return {"seq": e.seq, "at": e.at, "type": e.type, "channel": e.channel,
            "actor": e.actor, "event": event, "evidence": shown_evidence}


def _bounces(events: list[StoredEvent]) -> list[dict[str, Any]]:
    """Every bounce recorded, hard (suppressed at once) and soft (counted), oldest first."""
    found = []
    for e in events:
        if e.type != "Bounced":
            continue
        event = decode_event(e.payload)
        if isinstance(event, Bounced):
            found.append({"at": e.at, "hard": event.permanent, "status": event.status,
                          "cause": event.cause, "channel": e.channel})
    return found


@dataclass
class Rectified:
    old_contact: int
    new_contact: int
    moved: list[str]
    """Topics whose subscription moved to the new address."""


def rectify_in(tx: Tx, hasher: AddressHasher, old: str, new: str, by: Actor, at: datetime
               ) -> Rectified:
    """Move a person to a corrected address: subscriptions and opt-outs follow them;
    the old address stays suppressed (reason ``staff``)."""
    old_normal, new_normal = normalise(old), normalise(new)
    if old_normal == new_normal:
        raise ValueError("the new address is the same as the old one")
    old_hash, new_hash = hasher.addr_hash(old_normal), hasher.addr_hash(new_normal)
    contact = tx.contact_by_hash(old_hash)
    if contact is None or contact.erased_at is not None:
        raise UnknownPerson("no contact with the old address")
    if any(s.reason == "erasure" for s in tx.suppressions([new_hash])):
        raise ValueError("the new address belongs to an erased person")
    target = tx.contact_by_hash(new_hash) or ensure_contact_in(
        tx, new_normal, new_hash, at, by, contact.language, contact.country,
        contact.kind,  # type: ignore[arg-type]
        contact.source,
    )
    moved = []
    for sub in tx.subscriptions(contact.id):
        if sub.status == "unsubscribed":
            continue
        tx.append(Subscribed(at=at, channel=by.channel, actor=by.actor, contact_id=target.id,
                             topic=sub.topic, status=sub.status,  # type: ignore[arg-type]
                             basis=sub.basis),  # type: ignore[arg-type]
                  by.evidence)
        moved.append(sub.topic)
    held = {(s.scope, s.reason) for s in tx.suppressions([new_hash])}
    for s in tx.suppressions([old_hash]):
        if s.reason not in _FOLLOWS or (s.scope, s.reason) in held:
            continue
        if s.reason == "unsubscribe":
            topic = None if s.scope == "global" else s.scope.removeprefix("topic:")
            tx.append(Unsubscribed(at=at, channel=by.channel, actor=by.actor,
                                   contact_id=target.id, addr_hash=new_hash.hex(),
                                   topic=topic), by.evidence)
        else:
            tx.append(Suppressed(at=at, channel=by.channel, actor=by.actor,
                                 addr_hash=new_hash.hex(), scope=s.scope,
                                 reason=s.reason,  # type: ignore[arg-type]
                                 contact_id=target.id), by.evidence)
    if not any(s.scope == "global" and s.reason == "staff"
               for s in tx.suppressions([old_hash])):
        tx.append(Suppressed(at=at, channel=by.channel, actor=by.actor,
                             addr_hash=old_hash.hex(), scope="global", reason="staff",
                             contact_id=contact.id),
                  Evidence(note="address rectified: replaced by a corrected one"))
    return Rectified(contact.id, target.id, moved)


@dataclass
class Forgotten:
    already: bool
    seq: int = 0
    messages_redacted: int = 0


def forget_in(tx: Tx, hasher: AddressHasher, address: str, by: Actor, at: datetime,
              delete_at: list[str]) -> Forgotten:
    """Erase a person; ``delete_at``: connectors that can delete the contact (sync does
    it and then drops the address)."""
    normal = normalise(address)
    addr_hash = hasher.addr_hash(normal)
    existing = tx.suppressions([addr_hash])
    contact = tx.contact_by_hash(addr_hash)
    if (contact is not None and contact.erased_at is not None) or (
            contact is None and any(s.reason == "erasure" for s in existing)):
        return Forgotten(already=True)
    redacted = tx.redact_inbox(addr_hash, normal)
    if contact is None:
        seq = tx.append(Suppressed(at=at, channel=by.channel, actor=by.actor,
                                   addr_hash=addr_hash.hex(), scope="global",
                                   reason="erasure"), None)
        return Forgotten(already=False, seq=seq, messages_redacted=redacted)
    seq = tx.append(Erased(at=at, channel=by.channel, actor=by.actor, contact_id=contact.id,
                           addr_hash=addr_hash.hex()), None)
    for connector in delete_at:
        tx.queue_erasure(connector, seq, normal)
    return Forgotten(already=False, seq=seq, messages_redacted=redacted)
