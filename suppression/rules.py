"""May we send topic T to this contact now? Every "no" carries stable reason codes.

Pure: the caller gathers the contact, its subscriptions and the suppressions that
match its keyed hash (and its domain's), and this module decides. When in doubt,
it says no. Reason codes are a contract (documented in the README):

``invalid_address``                      the address cannot be mailed
``suppressed:global:<reason>``           on the list for everything
``suppressed:topic:<topic>:<reason>``    left this topic
``suppressed:domain``                    the whole domain is suppressed
``objection:third_party_data``           objected to data we did not get from them
``paused_until:<date>``                  asked for a pause until that date
``no_consent:default:opt_in``            marketing topic, no confirmed subscription
``pending_confirmation:<topic>``         subscribed but not yet confirmed (double opt-in)
``unknown_contact``                      service topic for someone who is not a contact
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from suppression.config import Topic
from suppression.store import Contact, Subscription, Suppression

THIRD_PARTY_SOURCES = frozenset({"partner", "purchased", "acquired"})


@dataclass(frozen=True, slots=True)
class Decision:
    sendable: bool
    reasons: tuple[str, ...]


def suppression_reasons(
    suppressions: Iterable[Suppression], topic: Topic | None, contact: Contact | None
) -> list[str]:
    reasons: list[str] = []
    topic_scope = f"topic:{topic.id}" if topic else None
    for s in suppressions:
        if s.scope == "global" and topic is not None and topic.required and s.reason in (
            "unsubscribe", "objection"
        ):
            continue  # "leave everything" does not stop a required service topic
        if s.scope == "global":
            reasons.append(f"suppressed:global:{s.reason}")
        elif s.scope == "domain":
            reasons.append("suppressed:domain")
        elif s.scope == "third_party":
            if contact is not None and contact.source in THIRD_PARTY_SOURCES:
                reasons.append("objection:third_party_data")
        elif topic is not None and s.scope == topic_scope:
            reasons.append(f"suppressed:topic:{topic.id}:{s.reason}")
    return reasons


def decide(
    *,
    contact: Contact | None,
    topic: Topic | None,
    subscriptions: Iterable[Subscription],
    suppressions: Iterable[Suppression],
    today: date,
) -> Decision:
    reasons = suppression_reasons(suppressions, topic, contact)
    if (
        contact is not None
        and contact.paused_until
        and (topic is None or not topic.required)
        and date.fromisoformat(contact.paused_until) > today
    ):
        reasons.append(f"paused_until:{contact.paused_until}")
    if topic is not None:
        status = {s.topic: s.status for s in subscriptions}.get(topic.id)
        if topic.kind == "marketing":
            if status == "pending":
                reasons.append(f"pending_confirmation:{topic.id}")
            elif status != "subscribed" and not any(r.startswith("suppressed:") for r in reasons):
                reasons.append("no_consent:default:opt_in")
        elif contact is None:
            reasons.append("unknown_contact")
    unique = tuple(dict.fromkeys(reasons))
    return Decision(not unique, unique)
