"""What a recipient can do to their own subscriptions, as write functions on a Tx.

Each function runs inside one store transaction, checks the current state and
appends only the events that change something (so repeating a request records
nothing new). Lifting an opt-out needs the person's confirmed opt-in (or an undo
within minutes of the opt-out, by the holder of the signed undo token); complaints,
bounces, erasures, staff and domain suppressions are never lifted here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from suppression.ledger import (
    Confirmed,
    Evidence,
    PreferencesChanged,
    Subscribed,
    SubscriptionRemoved,
    SuppressionLifted,
    Unsubscribed,
)
from suppression.store import Contact, Subscription, Suppression, Tx

# Suppressions a person's own confirmed opt-in may lift: their own opt-outs.
LIFTABLE_BY_OPT_IN = frozenset({"unsubscribe", "objection", "esp"})


class ContactNotFound(LookupError):
    """A genuine token names a contact this database does not have."""


@dataclass(frozen=True, slots=True)
class Who:
    """Channel, actor and evidence of a recipient's request."""

    channel: str
    actor: str
    evidence: Evidence | None
    at: datetime


@dataclass(frozen=True, slots=True)
class UnsubscribeResult:
    changed: bool
    seq: int = 0
    """The Unsubscribed event's seq (what an undo refers to)."""
    previous: str = ""
    """Subscriptions the unsubscribe ended, as ``topic=status:basis,...`` (for undo)."""


def need_contact(tx: Tx, contact_id: int) -> Contact:
    contact = tx.contact(contact_id)
    if contact is None:
        raise ContactNotFound(contact_id)
    return contact


def _blocks_everything(suppressions: Iterable[Suppression]) -> bool:
    return any(s.scope in ("global", "domain") for s in suppressions)


def unsubscribe(tx: Tx, contact_id: int, topic: str | None, who: Who) -> UnsubscribeResult:
    """Leave one topic (or everything when ``topic`` is None). Idempotent."""
    contact = need_contact(tx, contact_id)
    scope = "global" if topic is None else f"topic:{topic}"
    existing = tx.suppressions([contact.addr_hash])
    if _blocks_everything(existing) or any(
        s.scope == scope and s.reason == "unsubscribe" for s in existing
    ):
        return UnsubscribeResult(changed=False)
    rows = tx.subscriptions(contact_id)
    ended = [s for s in rows if s.status != "unsubscribed" and (topic is None or s.topic == topic)]
    seq = tx.append(
        Unsubscribed(at=who.at, channel=who.channel, actor=who.actor, contact_id=contact_id,
                     addr_hash=contact.addr_hash.hex(), topic=topic),
        who.evidence,
    )
    previous = [f"{s.topic}={s.status}:{s.basis}" for s in ended]
    if topic is not None and not any(s.topic == topic for s in rows):
        # No choice was recorded for this topic (the rules decided, e.g. a customer in
        # an opt-out country): an undo must give back exactly that, not a row.
        previous.append(f"{topic}=none:")
    return UnsubscribeResult(changed=True, seq=seq, previous=",".join(previous))


def undo_unsubscribe(
    tx: Tx, contact_id: int, topic: str | None, seq: int, previous: str, who: Who
) -> bool:
    """Restore the state before unsubscribe event ``seq``, if that opt-out still stands."""
    contact = need_contact(tx, contact_id)
    scope = "global" if topic is None else f"topic:{topic}"
    standing = [
        s for s in tx.suppressions([contact.addr_hash])
        if s.scope == scope and s.reason == "unsubscribe" and s.event_seq == seq
    ]
    if not standing:
        return False
    tx.append(
        SuppressionLifted(at=who.at, channel=who.channel, actor=who.actor,
                          addr_hash=contact.addr_hash.hex(), scope=scope, reason="unsubscribe",
                          why="undone by the recipient", contact_id=contact_id),
        who.evidence,
    )
    for item in filter(None, previous.split(",")):
        name, _, state = item.partition("=")
        status, _, basis = state.partition(":")
        if status == "none" and name == topic:
            tx.append(SubscriptionRemoved(at=who.at, channel=who.channel, actor=who.actor,
                                          contact_id=contact_id, topic=name), who.evidence)
        elif status in ("subscribed", "pending") and basis in (
            "consent", "soft_opt_in", "legitimate_interest", "implied"
        ):
            tx.append(
                Subscribed(at=who.at, channel=who.channel, actor=who.actor,
                           contact_id=contact_id, topic=name, status=status,  # type: ignore[arg-type]
                           basis=basis),  # type: ignore[arg-type]
                who.evidence,
            )
    return True


def request_subscription(
    tx: Tx, contact_id: int, topics: Sequence[str], consent_text: str | None, who: Who
) -> list[str]:
    """Record pending (unconfirmed) subscriptions; returns the topics now awaiting
    confirmation. Topics already subscribed are left alone."""
    current = {s.topic: s for s in tx.subscriptions(contact_id)}
    pending: list[str] = []
    for topic in topics:
        state = current.get(topic)
        if state is not None and state.status == "subscribed":
            continue
        if state is None or state.status != "pending":
            tx.append(
                Subscribed(at=who.at, channel=who.channel, actor=who.actor,
                           contact_id=contact_id, topic=topic, status="pending",
                           basis="consent", consent_text=consent_text),
                who.evidence,
            )
        pending.append(topic)
    return pending


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    confirmed: tuple[str, ...]
    blocked: bool
    """True when a suppression the person cannot lift themselves stands in the way."""


def confirm(
    tx: Tx, contact_id: int, topics: Sequence[str], all_topics: Sequence[str], who: Who
) -> ConfirmResult:
    """Confirm pending subscriptions (double opt-in) and lift the person's own opt-outs
    for exactly those topics."""
    contact = need_contact(tx, contact_id)
    suppressions = tx.suppressions([contact.addr_hash])
    if any(
        s.reason not in LIFTABLE_BY_OPT_IN
        and (s.scope in ("global", "domain") or s.scope in {f"topic:{t}" for t in topics})
        for s in suppressions
    ):
        return ConfirmResult((), blocked=True)
    subs: dict[str, Subscription] = {s.topic: s for s in tx.subscriptions(contact_id)}
    wanted = [t for t in topics if t in subs and subs[t].status == "pending"]
    if not wanted:
        return ConfirmResult((), blocked=False)
    hex_hash = contact.addr_hash.hex()
    for s in suppressions:
        lift = s.scope in ("global", "third_party") or s.scope in {f"topic:{t}" for t in wanted}
        if not lift:
            continue
        tx.append(
            SuppressionLifted(at=who.at, channel=who.channel, actor=who.actor, addr_hash=hex_hash,
                              scope=s.scope, reason=s.reason,  # type: ignore[arg-type]
                              why="confirmed opt-in by the person", contact_id=contact_id),
            who.evidence,
        )
        if s.scope == "global":
            # Leaving everything still holds for every topic not confirmed now.
            for other in all_topics:
                if other not in wanted:
                    tx.append(
                        Unsubscribed(at=who.at, channel=who.channel, actor=who.actor,
                                     contact_id=contact_id, addr_hash=hex_hash, topic=other),
                        Evidence(note="kept from an earlier unsubscribe from everything"),
                    )
    tx.append(
        Confirmed(at=who.at, channel=who.channel, actor=who.actor, contact_id=contact_id,
                  topics=tuple(wanted)),
        who.evidence,
    )
    return ConfirmResult(tuple(wanted), blocked=False)


def change_preferences(
    tx: Tx, contact_id: int, who: Who, *, language: str | None, paused_until: str | None
) -> bool:
    """Language and pause; ``paused_until`` '' clears a pause. True if anything changed."""
    contact = need_contact(tx, contact_id)
    new_language = language if language and language != contact.language else None
    new_pause = None
    if paused_until is not None and (paused_until or None) != contact.paused_until:
        new_pause = paused_until
    if new_language is None and new_pause is None:
        return False
    tx.append(
        PreferencesChanged(at=who.at, channel=who.channel, actor=who.actor,
                           contact_id=contact_id, language=new_language, paused_until=new_pause),
        who.evidence,
    )
    return True
