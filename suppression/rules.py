"""May we send topic T to this contact now? Every "no" carries stable reason codes.

Pure: the caller gathers the contact, its subscriptions and the suppressions that
match its keyed hash (and its domain's), and this module decides with the country
rules of :mod:`suppression.jurisdictions`. When in doubt, it says no. Order:
suppressions and objections, then pause, then the legal basis. Reason codes are a
contract (documented in the README):

``invalid_address``                      the address cannot be mailed (set by callers)
``suppressed:global:<reason>``           on the list for everything
``suppressed:topic:<topic>:<reason>``    left this topic
``suppressed:domain``                    the whole domain is suppressed
``objection:third_party_data``           objected to data we did not get from them
``erased``                               the contact was erased (no erasure suppression seen)
``paused_until:<date>``                  asked for a pause until that date
``unsubscribed:<topic>``                 the subscription row says unsubscribed
``pending_confirmation:<topic>``         subscribed but not yet confirmed (double opt-in)
``no_consent:<CC>:<kind>_opt_in``        opt-in country, no basis (kind b2c|b2b_named|
                                         b2b_generic|sole_trader)
``no_consent:default:opt_in``            no basis under the strictest, default rule
``no_consent:<CC>:third_party_source``   opt-in/consent country, data from a third party (a
                                         purchase date on such a row is ignored: the soft
                                         opt-in and implied consent are the sender's own)
``no_consent:<CC>:consent``              consent country, no express or implied consent
``no_consent:<CC>:wireless_domain``      an address on a wireless (mobile) domain without
                                         express consent (US, 47 CFR 64.3100)
``no_consent:<CC>:other_entity``         soft opt-in: the purchase was made with another
                                         legal entity than the brand's
``no_consent:<CC>:purchase_entity_unknown``  soft opt-in: brands belong to several legal
                                         entities and the purchase names none
``consent_expired:<CC>:<term>``          implied (CA) / inferred (AU) consent ran out
``consent_expired:<CC>:consent``         an express consent older than the row's
                                         consent_max_months
``no_relationship:service``              service topic for someone who is not a customer
``unknown_contact``                      service or required-notice topic for someone who
                                         is not a contact

Topics of kind ``required_notice`` (a notice the law requires, e.g. a personal-data breach
notification, GDPR art. 34, sent under art. 6(1)(c)) reach every contact whatever their
marketing consent, relationship, pause or opt-outs; only an erased contact and a
suppression meaning the address is dead (:data:`DEAD_ADDRESS_REASONS`) or a suppressed
domain stop them.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from suppression.config import Brand, Topic
from suppression.jurisdictions import (
    DEFAULT,
    DEFAULT_THIRD_PARTY,
    Column,
    Jurisdiction,
    Jurisdictions,
    builtin_jurisdictions,
)
from suppression.store import Contact, Subscription, Suppression

THIRD_PARTY_SOURCES = DEFAULT_THIRD_PARTY
REQUIRED_NOTICE = "required_notice"
DEAD_ADDRESS_REASONS = frozenset({"hard_bounce", "soft_bounce", "erasure"})
"""The suppressions that stop a required notice: the address cannot receive mail (a hard
bounce, a soft-bounce limit reached) or the person was erased. A person's unsubscribe,
objection or complaint is about marketing and does not: an obligation to inform
(GDPR art. 34, art. 6(1)(c)) is not subject to the right to object (art. 21 covers
processing under art. 6(1)(e)/(f) and direct marketing)."""
# Reasons after which the legal basis is not examined (nor reported) any more.
_FINAL = ("suppressed:", "objection:", "erased")


@dataclass(frozen=True, slots=True)
class Decision:
    sendable: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends: the legal entity of the brand the mailing is for.

    ``several``: the configured brands belong to more than one legal entity, so a soft
    opt-in needs the purchase to have been made with this one. With a single entity
    (or none named) any own purchase counts, as before entities existed.
    """

    entity: str | None = None
    several: bool = False


def sender_for(brands: Sequence[Brand], brand_id: str | None) -> Sender:
    """The sender of a mailing for ``brand_id`` (None or unknown: the first brand)."""
    entities = {b.legal_entity for b in brands if b.legal_entity}
    brand = next((b for b in brands if b.id == brand_id), brands[0] if brands else None)
    entity = brand.legal_entity or None if brand else None
    return Sender(entity, several=len(entities) > 1)


def suppression_reasons(
    suppressions: Iterable[Suppression], topic: Topic | None, contact: Contact | None,
    third_party: frozenset[str] = THIRD_PARTY_SOURCES,
) -> list[str]:
    reasons: list[str] = []
    topic_scope = f"topic:{topic.id}" if topic else None
    notice = topic is not None and topic.kind == REQUIRED_NOTICE
    for s in suppressions:
        if notice and s.scope != "domain" and s.reason not in DEAD_ADDRESS_REASONS:
            continue  # a legally required notice: only a dead address stops it
        if s.scope == "global" and topic is not None and topic.required and s.reason in (
            "unsubscribe", "objection"
        ):
            continue  # "leave everything" does not stop a required service topic
        if s.scope == "global":
            reasons.append(f"suppressed:global:{s.reason}")
        elif s.scope == "domain":
            reasons.append("suppressed:domain")
        elif s.scope == "third_party":
            if contact is not None and contact.source in third_party:
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
    jurisdictions: Jurisdictions | None = None,
    sender: Sender | None = None,
) -> Decision:
    """``jurisdictions`` defaults to the built-in table (config/jurisdictions.toml);
    ``sender`` (the brand's legal entity) matters for the soft opt-in only."""
    rules = jurisdictions or builtin_jurisdictions()
    reasons = suppression_reasons(suppressions, topic, contact, rules.third_party_sources)
    if contact is not None and contact.erased_at and "suppressed:global:erasure" not in reasons:
        reasons.append("erased")
    if contact is not None and contact.paused_until and (topic is None or not topic.required):
        until = _as_date(contact.paused_until)
        if until is None or until > today:  # an unreadable pause is honoured
            reasons.append(f"paused_until:{contact.paused_until}")
    if topic is not None:
        reasons += _topic_reasons(contact, topic, list(subscriptions), reasons, today, rules,
                                  sender or Sender())
    unique = tuple(dict.fromkeys(reasons))
    return Decision(not unique, unique)


def _topic_reasons(
    contact: Contact | None,
    topic: Topic,
    subscriptions: list[Subscription],
    so_far: list[str],
    today: date,
    rules: Jurisdictions,
    sender: Sender,
) -> list[str]:
    if contact is None and topic.kind != "marketing":
        return ["unknown_contact"]
    if topic.kind == REQUIRED_NOTICE:
        return []  # consent, relationship and opt-outs do not matter; dead addresses did
    sub = next((s for s in reversed(subscriptions) if s.topic == topic.id), None)
    status = sub.status if sub else None
    confirmed = sub is not None and status == "subscribed" and sub.basis == "consent"
    final = any(r.startswith(_FINAL) for r in so_far)
    if status == "unsubscribed" and not topic.required:
        # A suppression usually says it already; the row alone is an opt-out too. (Leaving
        # everything also marks a required topic's row, which must not stop that topic.)
        return [] if final else [f"unsubscribed:{topic.id}"]
    if status == "pending" and topic.kind == "marketing":
        return [f"pending_confirmation:{topic.id}"]
    if final:
        return []  # an opt-out is final: no point naming a missing basis too
    if topic.kind != "marketing":
        if confirmed:
            return []  # a confirmed subscription is a relationship for a service topic
        return _service_reasons(contact, topic, status, rules)
    row = rules.for_country(contact.country if contact else None)
    expired = _expired(row, sub.since, today) if confirmed and sub is not None else []
    if confirmed and not expired:
        return []  # a confirmed opt-in satisfies every regime while it lasts
    column = Jurisdiction.column(contact.kind if contact else None)
    other = _marketing_reasons(contact, row, column, today, rules, sender)
    return expired if expired and other else other


def _expired(row: Jurisdiction, since: str | None, today: date) -> list[str]:
    """consent_expired:<CC>:consent when the row limits a consent's lifetime and this one
    is older (a missing or unreadable date cannot show its age: it counts as given)."""
    if row.consent_max_months is None or _as_date(since) is None:
        return []
    if _recent(since, row.consent_max_months, today) is False:
        return [f"consent_expired:{row.key}:consent"]
    return []


def _service_reasons(
    contact: Contact | None, topic: Topic, status: str | None, rules: Jurisdictions
) -> list[str]:
    if rules.service_audience == "contacts" or (
        contact and _is_customer(contact, rules.third_party_sources)
    ):
        return []  # legitimate interest / contract with an existing customer
    if status == "pending":
        return [f"pending_confirmation:{topic.id}"]
    return ["no_relationship:service"]


def _marketing_reasons(
    contact: Contact | None, row: Jurisdiction, column: Column, today: date,
    rules: Jurisdictions, sender: Sender,
) -> list[str]:
    regime = row.regime(column)
    third_party = contact is not None and contact.source in rules.third_party_sources
    express = (
        contact is not None
        and not row.double_opt_in
        and not third_party
        and _not_after(_as_date(contact.consent_at), today)
    )
    if regime in ("opt_out", "opt_out_role"):
        # opt_out_role: we assume every marketing topic concerns a named B2B contact's role.
        address = contact.address if contact else None
        if row.wireless_domains_need_consent and on_wireless_domain(address, rules):
            if express:
                return _expired(row, contact.consent_at if contact else None, today)
            return [f"no_consent:{row.key}:wireless_domain"]
        return []
    if contact is None:
        return [_no_consent(row, column)]
    expired = _expired(row, contact.consent_at, today) if express else []
    if express and not expired:
        return []
    if regime == "opt_in":
        soft = _soft_opt_in(contact, row, today, sender, third_party)
        if soft is True:
            return []
        if expired:
            return expired
        if isinstance(soft, str):
            return [f"no_consent:{row.key}:{soft}"]
        return [_no_consent(row, column, third_party)]
    # regime "consent" (CA, AU): express, else implied/inferred within the windows; the
    # business relationship must be the sender's own, never a third party's.
    if third_party:
        return [f"no_consent:{row.key}:third_party_source"]
    implied = _implied(contact, row, today)
    if implied is not True and expired:
        return expired
    if implied is True:
        return []
    if implied is False:
        return [f"consent_expired:{row.key}:{row.implied_term}"]
    return [f"no_consent:{row.key}:{'third_party_source' if third_party else 'consent'}"]


def _no_consent(row: Jurisdiction, column: Column, third_party: bool = False) -> str:
    if third_party:
        detail = "third_party_source"
    elif row.key == DEFAULT:
        detail = "opt_in"  # the code mailprefs always had for the default rule; kept stable
    else:
        detail = f"{column}_opt_in"
    return f"no_consent:{row.key}:{detail}"


def _is_customer(contact: Contact, third_party: frozenset[str] = THIRD_PARTY_SOURCES) -> bool:
    """Our own customer. A purchase date on a third-party row (a partner's or a bought
    list, an acquired company's file) is someone else's sale: kept as data, ignored."""
    if contact.source in third_party:
        return False
    return contact.source == "customer" or bool(contact.last_purchase_at)


def _soft_opt_in(contact: Contact, row: Jurisdiction, today: date, sender: Sender,
                 third_party: bool) -> bool | str:
    """True when the soft opt-in applies; a reason detail when only the legal entity of
    the sale stands in the way; False otherwise."""
    if not row.soft_opt_in or third_party:
        return False
    if row.soft_opt_in_months is None:
        customer = _is_customer(contact, frozenset())
    else:
        # A limited window needs a purchase date to measure from.
        customer = _recent(contact.last_purchase_at, row.soft_opt_in_months, today) is True
    if not customer:
        return False
    if sender.several:
        entity = contact.purchase_entity
        if not entity:
            return "purchase_entity_unknown"
        if entity != sender.entity:
            return "other_entity"
    return True


def on_wireless_domain(address: str | None, rules: Jurisdictions) -> bool:
    """Is this address on a domain of the wireless-domain list (47 CFR 64.3100)?"""
    if not address or not rules.wireless_domains:
        return False
    labels = address.rpartition("@")[2].strip().lower().rstrip(".").split(".")
    # A listed domain covers its subdomains (FCC: "mobile.example.com" under "example.com").
    return any(".".join(labels[i:]) in rules.wireless_domains for i in range(len(labels) - 1))


def _implied(contact: Contact, row: Jurisdiction, today: date) -> bool | None:
    """True: implied consent holds; False: it existed but ran out; None: there is none."""
    found = [
        _recent(value, months, today)
        for value, months in (
            (contact.last_purchase_at, row.implied_purchase_months),
            (contact.last_enquiry_at, row.implied_enquiry_months),
        )
        if months is not None
    ]
    if True in found:
        return True
    return False if False in found else None


def _recent(value: str | None, months: int, today: date) -> bool | None:
    """Whether ``value`` lies less than ``months`` calendar months before ``today``.

    None when it is missing, unreadable or in the future (then it proves nothing).
    """
    when = _as_date(value)
    if when is None or when > today:
        return None
    return today < _add_months(when, months)


def _add_months(day: date, months: int) -> date:
    year, month0 = divmod(day.month - 1 + months, 12)
    year += day.year
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def _as_date(value: str | None) -> date | None:
    """An ISO date or datetime string as a date; None when missing or unreadable."""
    if not value or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip()).date()
    except ValueError:
        return None


def _not_after(when: date | None, today: date) -> bool:
    return when is not None and when <= today
