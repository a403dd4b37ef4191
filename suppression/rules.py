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
``no_consent:<CC>:<kind>_opt_in``        opt-in country, no basis (kind b2c|b2b_named|b2b_generic)
``no_consent:default:opt_in``            no basis under the strictest, default rule
``no_consent:<CC>:third_party_source``   opt-in/consent country, data from a third party
``no_consent:<CC>:consent``              consent country, no express or implied consent
``consent_expired:<CC>:<term>``          implied (CA) / inferred (AU) consent ran out
``no_relationship:service``              service topic for someone who is not a customer
``unknown_contact``                      service topic for someone who is not a contact
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from suppression.config import Topic
from suppression.jurisdictions import (
    DEFAULT,
    Column,
    Jurisdiction,
    Jurisdictions,
    builtin_jurisdictions,
)
from suppression.store import Contact, Subscription, Suppression

THIRD_PARTY_SOURCES = frozenset({"partner", "purchased", "acquired"})
# Reasons after which the legal basis is not examined (nor reported) any more.
_FINAL = ("suppressed:", "objection:", "erased")


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
    jurisdictions: Jurisdictions | None = None,
) -> Decision:
    """``jurisdictions`` defaults to the built-in table (config/jurisdictions.toml)."""
    reasons = suppression_reasons(suppressions, topic, contact)
    if contact is not None and contact.erased_at and "suppressed:global:erasure" not in reasons:
        reasons.append("erased")
    if contact is not None and contact.paused_until and (topic is None or not topic.required):
        until = _as_date(contact.paused_until)
        if until is None or until > today:  # an unreadable pause is honoured
            reasons.append(f"paused_until:{contact.paused_until}")
    if topic is not None:
        rules = jurisdictions or builtin_jurisdictions()
        reasons += _topic_reasons(contact, topic, list(subscriptions), reasons, today, rules)
    unique = tuple(dict.fromkeys(reasons))
    return Decision(not unique, unique)


def _topic_reasons(
    contact: Contact | None,
    topic: Topic,
    subscriptions: list[Subscription],
    so_far: list[str],
    today: date,
    rules: Jurisdictions,
) -> list[str]:
    if contact is None and topic.kind != "marketing":
        return ["unknown_contact"]
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
    if confirmed:
        return []  # a confirmed opt-in satisfies every regime and the service rule
    if topic.kind != "marketing":
        return _service_reasons(contact, topic, status, rules)
    row = rules.for_country(contact.country if contact else None)
    column = Jurisdiction.column(contact.kind if contact else None)
    return _marketing_reasons(contact, row, column, today)


def _service_reasons(
    contact: Contact | None, topic: Topic, status: str | None, rules: Jurisdictions
) -> list[str]:
    if rules.service_audience == "contacts" or (contact and _is_customer(contact)):
        return []  # legitimate interest / contract with an existing customer
    if status == "pending":
        return [f"pending_confirmation:{topic.id}"]
    return ["no_relationship:service"]


def _marketing_reasons(
    contact: Contact | None, row: Jurisdiction, column: Column, today: date
) -> list[str]:
    regime = row.regime(column)
    if regime in ("opt_out", "opt_out_role"):
        # opt_out_role: we assume every marketing topic concerns a named B2B contact's role.
        return []
    if contact is None:
        return [_no_consent(row, column)]
    third_party = contact.source in THIRD_PARTY_SOURCES
    express = (
        not row.double_opt_in
        and not third_party
        and _not_after(_as_date(contact.consent_at), today)
    )
    if regime == "opt_in":
        if express or _soft_opt_in(contact, row, today):
            return []
        return [_no_consent(row, column, third_party)]
    # regime "consent" (CA, AU): express, else implied/inferred within the windows.
    if express:
        return []
    implied = _implied(contact, row, today)
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


def _is_customer(contact: Contact) -> bool:
    return contact.source == "customer" or bool(contact.last_purchase_at)


def _soft_opt_in(contact: Contact, row: Jurisdiction, today: date) -> bool:
    if not row.soft_opt_in:
        return False
    if row.soft_opt_in_months is None:
        return _is_customer(contact)
    # A limited window needs a purchase date to measure from.
    return _recent(contact.last_purchase_at, row.soft_opt_in_months, today) is True


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
