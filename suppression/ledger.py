"""The ledger: append-only, hash-chained events from which all current state derives.

Every event is a frozen msgspec Struct in one tagged union. The personal part of
what proves an event (IP address, user agent, the raw message, the address
itself for ``ContactAdded``) is kept apart as :class:`Evidence`: the chain covers
its SHA-256 digest, so erasure can delete the evidence and the chain still
verifies.

Chain: ``hash = SHA-256(prev_hash | seq | payload | evidence_digest)`` where
``payload`` is the event's canonical JSON.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

import msgspec

GENESIS = "0" * 64

Channel = str
"""link | one_click | preference_page | subscribe_form | mailto | staff | import | cli |
api | esp:NAME"""

Basis = Literal["consent", "soft_opt_in", "legitimate_interest", "implied"]
ContactKind = Literal["person", "b2b_named", "b2b_generic", "sole_trader"]
"""sole_trader: a sole trader or unincorporated business (a natural person in trade)."""
SuppressionReason = Literal[
    "unsubscribe", "objection", "complaint", "hard_bounce", "soft_bounce", "erasure", "staff",
    "esp",
]
# Reasons a person's own fresh confirmed opt-in does not lift: the list must keep
# them whatever happens (a complaint, a dead mailbox, a mailbox that keeps refusing our
# mail, an erasure).
STICKY_REASONS: frozenset[str] = frozenset(
    {"complaint", "hard_bounce", "soft_bounce", "erasure"})


class Evidence(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """What proves an event. Personal, hence erasable; the chain keeps its digest."""

    ip: str | None = None
    user_agent: str | None = None
    message_id: str | None = None
    token_id: str | None = None
    note: str | None = None
    address: str | None = None
    """Only on ContactAdded / ContactUpdated (the address lives nowhere else in the ledger)."""
    name: str | None = None
    company: str | None = None
    record: dict[str, str] | None = None
    """A third party's record (an ESP's webhook or API item), flattened to strings."""


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    at: datetime
    channel: Channel
    actor: str
    """Who acted: 'recipient', 'staff:alice', 'cli', 'esp:mc', 'system'."""


class ContactAdded(_Event, frozen=True, kw_only=True):
    """A new contact. Its address, name and company are evidence (erasable)."""

    contact_id: int
    addr_hash: str
    language: str | None = None
    country: str | None = None
    kind: ContactKind = "person"
    source: str = "form"
    consent_at: str | None = None
    last_purchase_at: str | None = None
    last_enquiry_at: str | None = None
    purchase_entity: str | None = None
    """The legal entity the purchase was made with (its soft opt-in only)."""


class CreatedContact(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One contact of a :class:`ContactsAdded` batch: the facts ContactAdded would carry,
    and the SHA-256 of this contact's own evidence (address, name, company, the file's
    line), kept apart so that erasing one person leaves the batch verifiable."""

    contact_id: int
    addr_hash: str
    evidence: str
    """SHA-256 hex of the contact's encoded Evidence."""
    language: str | None = None
    country: str | None = None
    kind: ContactKind = "person"
    source: str = "form"
    consent_at: str | None = None
    last_purchase_at: str | None = None
    last_enquiry_at: str | None = None
    purchase_entity: str | None = None


class ContactsAdded(_Event, frozen=True, kw_only=True):
    """New contacts in bulk (an import batch, the new recipients of a pre-send check):
    one event, one link of the chain, for up to a few thousand contacts. Each contact
    points back at it (where it came from: the batch's note names the file, the
    contact's own evidence its line)."""

    contacts: tuple[CreatedContact, ...]


def contacts_added(at: datetime, channel: Channel, actor: str,
                   items: list[tuple[CreatedContact, Evidence]]
                   ) -> tuple[ContactsAdded, list[bytes]]:
    """The batch event for these contacts (their ``evidence`` digests filled in from
    the Evidence given) and each contact's encoded evidence, in the same order."""
    bodies = [encode_evidence(evidence) for _, evidence in items]
    contacts = tuple(
        msgspec.structs.replace(contact, evidence=evidence_digest(body))
        for (contact, _), body in zip(items, bodies, strict=True)
    )
    return ContactsAdded(at=at, channel=channel, actor=actor, contacts=contacts), bodies


class ContactUpdated(_Event, frozen=True, kw_only=True):
    """Changed facts (None: unchanged). A new name/company/address is evidence."""

    contact_id: int
    language: str | None = None
    country: str | None = None
    kind: ContactKind | None = None
    consent_at: str | None = None
    last_purchase_at: str | None = None
    last_enquiry_at: str | None = None
    purchase_entity: str | None = None


class Subscribed(_Event, frozen=True, kw_only=True):
    contact_id: int
    topic: str
    status: Literal["subscribed", "pending"]
    basis: Basis = "consent"
    consent_text: str | None = None


class SubscriptionRemoved(_Event, frozen=True, kw_only=True):
    """The contact has no subscription row for the topic any more (an undo gives back
    "no choice made", e.g. a customer in an opt-out country who never subscribed)."""

    contact_id: int
    topic: str


class Confirmed(_Event, frozen=True, kw_only=True):
    contact_id: int
    topics: tuple[str, ...]


class Unsubscribed(_Event, frozen=True, kw_only=True):
    """The person left a topic (or everything). Also suppresses their keyed hash, so the
    opt-out outlives the contact record (imports, erasure)."""

    contact_id: int
    addr_hash: str
    topic: str | None = None
    """None: every topic (leave everything)."""


class Suppressed(_Event, frozen=True, kw_only=True):
    addr_hash: str
    scope: str
    """'global', 'topic:ID' or 'domain'."""
    reason: SuppressionReason
    contact_id: int | None = None


class SuppressionLifted(_Event, frozen=True, kw_only=True):
    addr_hash: str
    scope: str
    reason: SuppressionReason
    """Which suppression is lifted (others on the same scope stay)."""
    why: str
    contact_id: int | None = None


class Objected(_Event, frozen=True, kw_only=True):
    contact_id: int | None = None
    addr_hash: str
    scope: Literal["third_party_data", "all"]


class HashSuppressed(_Event, frozen=True, kw_only=True):
    """A partner's or an ESP's hashed suppression list entry (MD5/SHA-256 of the
    lower-cased address): matches any address with that hash from now on."""

    algorithm: Literal["md5", "sha256"]
    digest: str
    reason: SuppressionReason = "staff"


class Bounced(_Event, frozen=True, kw_only=True):
    """A failed delivery: permanent (hard: the address itself fails) suppresses at once;
    a soft one is recorded and counts towards ``[mailbox] soft_bounce_limit``."""

    addr_hash: str
    permanent: bool
    status: str | None = None
    contact_id: int | None = None
    cause: str | None = None
    """no_such_user, mailbox_full, policy, ... (see suppression.replies.BounceCause);
    None on older events and where the report does not say."""
    failed_at: datetime | None = None
    """When the failure happened (the report's date), where earlier than ``at`` (mail
    ingested late, an archive); soft bounces are counted by it."""


class Complained(_Event, frozen=True, kw_only=True):
    addr_hash: str
    contact_id: int | None = None


class Erased(_Event, frozen=True, kw_only=True):
    contact_id: int
    addr_hash: str


class ReviewDecided(_Event, frozen=True, kw_only=True):
    """A staff decision on a message of the privacy mailbox (the review queue)."""

    item: int
    """The inbox item."""
    decision: str
    """applied | dismissed | address_changed | exported | rectified | erased | ..."""
    contact_id: int | None = None


class AccessChanged(_Event, frozen=True, kw_only=True):
    """A staff user or an API token was added, changed or revoked (never the secret)."""

    subject: str
    """'user:NAME' or 'token:ID'."""
    change: str
    """'added role=privacy', 'revoked', 'password changed', ..."""


class PreferencesChanged(_Event, frozen=True, kw_only=True):
    contact_id: int
    language: str | None = None
    paused_until: str | None = None
    """ISO date, or '' to clear a pause."""


Event = (
    ContactAdded
    | ContactsAdded
    | ContactUpdated
    | Subscribed
    | SubscriptionRemoved
    | Confirmed
    | Unsubscribed
    | Suppressed
    | SuppressionLifted
    | Objected
    | HashSuppressed
    | Bounced
    | Complained
    | Erased
    | PreferencesChanged
    | ReviewDecided
    | AccessChanged
)

_encoder = msgspec.json.Encoder(order="deterministic")
_event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(payload: bytes) -> Event:
    return _event_decoder.decode(payload)


def encode_evidence(evidence: Evidence) -> bytes:
    return _encoder.encode(evidence)


def evidence_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def chain_hash(prev_hash: str, seq: int, payload: bytes, digest: str) -> str:
    h = hashlib.sha256()
    h.update(prev_hash.encode("ascii"))
    h.update(b"|%d|" % seq)
    h.update(payload)
    h.update(b"|")
    h.update(digest.encode("ascii"))
    return h.hexdigest()


def event_type(event: Event) -> str:
    return type(event).__name__


def event_contact(event: Event) -> int | None:
    return getattr(event, "contact_id", None)


def event_addr_hash(event: Event) -> str | None:
    return getattr(event, "addr_hash", None)


class StoredEvent(msgspec.Struct, frozen=True):
    """One ledger row as read back."""

    seq: int
    at: str
    type: str
    contact_id: int | None
    addr_hash: str | None
    channel: str
    actor: str
    payload: bytes
    evidence_digest: str
    prev_hash: str
    hash: str


class ChainBroken(msgspec.Struct, frozen=True):
    seq: int
    problem: str


def _check_row(row: StoredEvent, prev_hash: str, expect_seq: int) -> str | None:
    """What is wrong with this row as the successor of ``prev_hash``, or None."""
    if row.seq != expect_seq:
        return f"missing event (next stored is #{row.seq})"
    if row.prev_hash != prev_hash:
        return "prev_hash does not match the previous event"
    if chain_hash(prev_hash, row.seq, row.payload, row.evidence_digest) != row.hash:
        return "hash does not match the event's content"
    try:
        event = decode_event(row.payload)
    except msgspec.DecodeError:
        return "payload is not a valid event"
    if (
        event_type(event) != row.type
        or event.channel != row.channel
        or event.actor != row.actor
        or event.at.isoformat() != row.at
        or event_contact(event) != row.contact_id
        or event_addr_hash(event) != row.addr_hash
    ):
        return "indexed columns differ from the event's content"
    return None


def verify_chain(
    rows: list[StoredEvent], prev_hash: str = GENESIS, expect_seq: int = 1
) -> tuple[ChainBroken | None, str, int]:
    """Check a run of consecutive rows; returns (first break, last hash, next seq).

    Called page by page so a ledger of millions of rows verifies in constant memory.
    """
    for row in rows:
        problem = _check_row(row, prev_hash, expect_seq)
        if problem is not None:
            return ChainBroken(expect_seq, problem), prev_hash, expect_seq
        prev_hash = row.hash
        expect_seq += 1
    return None, prev_hash, expect_seq
