"""The opt-in rules engine against the legal table, case by case.

Expected reasons are written out as data from the table in config/jurisdictions.toml
(and the law it cites), never computed by calling the engine.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from suppression.config import ConfigError, Topic
from suppression.jurisdictions import (
    BUILTIN_PATH,
    builtin_jurisdictions,
    load_jurisdictions,
)
from suppression.rules import decide
from suppression.store import Contact, Subscription, Suppression

TODAY = date(2025, 6, 15)
Reasons = tuple[str, ...]
OK: Reasons = ()

NEWSLETTER = Topic("newsletter", "marketing", {"en": "Newsletter"})
NOTICES = Topic("notices", "service", {"en": "Notices"})
SECURITY = Topic("security", "service", {"en": "Security notices"}, required=True)
BREACH = Topic("breach", "required_notice", {"en": "Data breach notice"}, required=True)
TOPICS = {"marketing": NEWSLETTER, "service": NOTICES, "required": SECURITY,
          "required_notice": BREACH}


def contact(country: str | None = "BE", kind: str = "person", source: str = "form",
            **facts: str | None) -> Contact:
    return Contact(id=1, address="x@example.com", addr_hash=b"h", language="en",
                   country=country, kind=kind, source=source, created_at="2020-01-01",
                   **facts)  # type: ignore[arg-type]


def sub(topic: str, status: str = "subscribed", basis: str = "consent") -> Subscription:
    return Subscription(contact_id=1, topic=topic, status=status, basis=basis,
                        since="2024-01-01", event_seq=1)


def supp(scope: str, reason: str) -> Suppression:
    return Suppression(addr_hash=b"h", scope=scope, reason=reason, since="2024-01-01",
                       channel="test", event_seq=1)


def reasons(c: Contact | None, topic: Topic, subs: list[Subscription] | None = None,
            supps: list[Suppression] | None = None) -> Reasons:
    return decide(contact=c, topic=topic, subscriptions=subs or [], suppressions=supps or [],
                  today=TODAY, jurisdictions=builtin_jurisdictions()).reasons


# --- the legal table ---------------------------------------------------------------
# Provenances: how we got the contact and what we know.
#   form      signed up on our form and confirmed (subscribed row, basis consent)
#   customer  source customer, last purchase 3 months ago, no subscription
#   import    our own CRM import with a consent_at, never confirmed by us
#   purchased / partner / acquired   third-party list that claims a consent_at
#   bought_customer   a purchased list whose rows carry a last purchase (someone else's
#             sale: kept as data, never a soft opt-in or implied consent)
#   none      added by hand, no basis at all
PROVENANCES = ("form", "customer", "import", "purchased", "partner", "acquired",
               "bought_customer", "none")


def build(provenance: str, country: str | None, kind: str, topic: Topic
          ) -> tuple[Contact, list[Subscription]]:
    if provenance == "form":
        return contact(country, kind, "form"), [sub(topic.id)]
    if provenance == "customer":
        return contact(country, kind, "customer", last_purchase_at="2025-03-15"), []
    if provenance == "import":
        return contact(country, kind, "import:crm", consent_at="2024-01-15T10:00:00+00:00"), []
    if provenance in ("purchased", "partner", "acquired"):
        return contact(country, kind, provenance, consent_at="2024-01-15"), []
    if provenance == "bought_customer":
        return contact(country, kind, "purchased", last_purchase_at="2025-03-15"), []
    return contact(country, kind, "cli"), []


def no(code: str) -> Reasons:
    return (code,)


# Marketing topic, per (country, kind): expected reasons for
# (form, customer, import, third party [purchased, partner, acquired alike], none).
# Country None is the default row (unknown country).
MARKETING: dict[tuple[str | None, str], tuple[Reasons, Reasons, Reasons, Reasons, Reasons]] = {
    # BE: opt-in B2C and named B2B, soft opt-in, generic B2B opt-out
    ("BE", "person"): (OK, OK, OK, no("no_consent:BE:third_party_source"),
                       no("no_consent:BE:b2c_opt_in")),
    ("BE", "b2b_named"): (OK, OK, OK, no("no_consent:BE:third_party_source"),
                          no("no_consent:BE:b2b_named_opt_in")),
    ("BE", "b2b_generic"): (OK, OK, OK, OK, OK),
    # NL: opt-in for every kind since the 2021 amendment (Tw 11.7 lid 1); soft opt-in (lid 4)
    ("NL", "person"): (OK, OK, OK, no("no_consent:NL:third_party_source"),
                       no("no_consent:NL:b2c_opt_in")),
    ("NL", "b2b_named"): (OK, OK, OK, no("no_consent:NL:third_party_source"),
                          no("no_consent:NL:b2b_named_opt_in")),
    ("NL", "b2b_generic"): (OK, OK, OK, no("no_consent:NL:third_party_source"),
                            no("no_consent:NL:b2b_generic_opt_in")),
    # FR: opt-in B2C; named B2B opt-out about their role; generic opt-out
    ("FR", "person"): (OK, OK, OK, no("no_consent:FR:third_party_source"),
                       no("no_consent:FR:b2c_opt_in")),
    ("FR", "b2b_named"): (OK, OK, OK, OK, OK),
    ("FR", "b2b_generic"): (OK, OK, OK, OK, OK),
    # DE: opt-in for all, double opt-in as proof (an imported consent_at does not count),
    # narrow soft opt-in (a purchase 3 months ago is inside the 12-month window)
    ("DE", "person"): (OK, OK, no("no_consent:DE:b2c_opt_in"),
                       no("no_consent:DE:third_party_source"), no("no_consent:DE:b2c_opt_in")),
    ("DE", "b2b_named"): (OK, OK, no("no_consent:DE:b2b_named_opt_in"),
                          no("no_consent:DE:third_party_source"),
                          no("no_consent:DE:b2b_named_opt_in")),
    ("DE", "b2b_generic"): (OK, OK, no("no_consent:DE:b2b_generic_opt_in"),
                            no("no_consent:DE:third_party_source"),
                            no("no_consent:DE:b2b_generic_opt_in")),
    # LU, ES, IT: opt-in for all, soft opt-in
    ("LU", "person"): (OK, OK, OK, no("no_consent:LU:third_party_source"),
                       no("no_consent:LU:b2c_opt_in")),
    ("LU", "b2b_named"): (OK, OK, OK, no("no_consent:LU:third_party_source"),
                          no("no_consent:LU:b2b_named_opt_in")),
    ("LU", "b2b_generic"): (OK, OK, OK, no("no_consent:LU:third_party_source"),
                            no("no_consent:LU:b2b_generic_opt_in")),
    ("ES", "person"): (OK, OK, OK, no("no_consent:ES:third_party_source"),
                       no("no_consent:ES:b2c_opt_in")),
    ("ES", "b2b_named"): (OK, OK, OK, no("no_consent:ES:third_party_source"),
                          no("no_consent:ES:b2b_named_opt_in")),
    ("ES", "b2b_generic"): (OK, OK, OK, no("no_consent:ES:third_party_source"),
                            no("no_consent:ES:b2b_generic_opt_in")),
    ("IT", "person"): (OK, OK, OK, no("no_consent:IT:third_party_source"),
                       no("no_consent:IT:b2c_opt_in")),
    ("IT", "b2b_named"): (OK, OK, OK, no("no_consent:IT:third_party_source"),
                          no("no_consent:IT:b2b_named_opt_in")),
    ("IT", "b2b_generic"): (OK, OK, OK, no("no_consent:IT:third_party_source"),
                            no("no_consent:IT:b2b_generic_opt_in")),
    # GB: opt-in for individual subscribers, opt-out for corporate ones
    ("GB", "person"): (OK, OK, OK, no("no_consent:GB:third_party_source"),
                       no("no_consent:GB:b2c_opt_in")),
    ("GB", "b2b_named"): (OK, OK, OK, OK, OK),
    ("GB", "b2b_generic"): (OK, OK, OK, OK, OK),
    # US: CAN-SPAM opt-out for everyone, third-party lists included
    ("US", "person"): (OK, OK, OK, OK, OK),
    ("US", "b2b_named"): (OK, OK, OK, OK, OK),
    ("US", "b2b_generic"): (OK, OK, OK, OK, OK),
    # CA: express or implied consent; third-party consent does not count
    ("CA", "person"): (OK, OK, OK, no("no_consent:CA:third_party_source"),
                       no("no_consent:CA:consent")),
    ("CA", "b2b_named"): (OK, OK, OK, no("no_consent:CA:third_party_source"),
                          no("no_consent:CA:consent")),
    ("CA", "b2b_generic"): (OK, OK, OK, no("no_consent:CA:third_party_source"),
                            no("no_consent:CA:consent")),
    # AU: express or inferred consent
    ("AU", "person"): (OK, OK, OK, no("no_consent:AU:third_party_source"),
                       no("no_consent:AU:consent")),
    ("AU", "b2b_named"): (OK, OK, OK, no("no_consent:AU:third_party_source"),
                          no("no_consent:AU:consent")),
    ("AU", "b2b_generic"): (OK, OK, OK, no("no_consent:AU:third_party_source"),
                            no("no_consent:AU:consent")),
    # default: opt-in for all, no soft opt-in, only a confirmed subscription counts
    (None, "person"): (OK, no("no_consent:default:opt_in"), no("no_consent:default:opt_in"),
                       no("no_consent:default:third_party_source"),
                       no("no_consent:default:opt_in")),
    (None, "b2b_named"): (OK, no("no_consent:default:opt_in"), no("no_consent:default:opt_in"),
                          no("no_consent:default:third_party_source"),
                          no("no_consent:default:opt_in")),
    (None, "b2b_generic"): (OK, no("no_consent:default:opt_in"),
                            no("no_consent:default:opt_in"),
                            no("no_consent:default:third_party_source"),
                            no("no_consent:default:opt_in")),
}


# The other EU/EEA rows (researched in the 2026-12 review, most marked unverified: see
# each row's note), AT, CH and NZ, column by column as config/jurisdictions.toml encodes
# them. Regimes (written out from the table, not read from it):
#   "in"        opt-in, no soft opt-in, an imported first-party consent counts
#   "in+soft"   opt-in with the customer exception
#   "in+soft+doi"  ... and only a confirmed (double opt-in) subscription proves consent
#   "in+soft+12m"  ... and an express consent lapses after 12 months (DK)
#   "out"       opt-out (generic company addresses where the law exempts legal persons)
#   "consent"   express consent only (HR: named staff and sole traders, who are neither
#               legal persons nor the "potrošači" of the soft opt-in)
COLUMNS = ("b2c", "b2b_named", "b2b_generic", "sole_trader")
KIND_OF = {"b2c": "person", "b2b_named": "b2b_named", "b2b_generic": "b2b_generic",
           "sole_trader": "sole_trader"}
RESEARCHED: dict[str, tuple[str, str, str, str]] = {
    "AT": ("in", "in", "in", "in"),  # customer exception needs the ECG list: not encoded
    "BG": ("in", "in", "in", "in"),  # legal persons opt-out only off the KZP register
    "CH": ("in+soft", "in+soft", "in+soft", "in+soft"),
    "CY": ("in+soft", "in+soft", "in+soft", "in+soft"),
    "CZ": ("in+soft+doi", "in+soft+doi", "in+soft+doi", "in+soft+doi"),
    "DK": ("in+soft+12m", "in+soft+12m", "in+soft+12m", "in+soft+12m"),
    "EE": ("in+soft", "in+soft", "out", "in+soft"),
    "FI": ("in+soft", "in+soft", "out", "in+soft"),
    "GR": ("in+soft+doi", "in+soft+doi", "in+soft+doi", "in+soft+doi"),
    "HR": ("in+soft", "consent", "out", "consent"),
    "HU": ("in", "in", "out", "in"),
    "IE": ("in+soft", "out", "out", "in+soft"),  # soft opt-in within 12 months of a sale
    "IS": ("in", "in", "in", "in"),
    "LI": ("in", "in", "in", "in"),
    "LT": ("in+soft", "in+soft", "in+soft", "in+soft"),
    "LV": ("in+soft", "in+soft", "out", "in+soft"),
    "MT": ("in+soft", "in+soft", "in+soft", "in+soft"),
    "NO": ("in+soft", "in+soft", "out", "in+soft"),
    "PL": ("in", "in", "in", "in"),
    "PT": ("in+soft", "in+soft", "in+soft", "in+soft"),  # legal persons: the DGC list
    "RO": ("in", "in", "in", "in"),
    "SE": ("in+soft", "in+soft", "out", "in+soft"),
    "SI": ("in", "in", "in", "in"),
    "SK": ("in+soft", "in+soft", "in+soft", "in+soft"),  # soft opt-in within 12 months
}


def _expected_row(cc: str, column: str, regime: str
                  ) -> tuple[Reasons, Reasons, Reasons, Reasons, Reasons]:
    """(form, customer, import, third party, none) for one column of a researched row."""
    if regime == "out":
        return (OK, OK, OK, OK, OK)
    third = no(f"no_consent:{cc}:third_party_source")
    if regime == "consent":
        return (OK, no(f"no_consent:{cc}:consent"), OK, third, no(f"no_consent:{cc}:consent"))
    missing = no(f"no_consent:{cc}:{column}_opt_in")
    if regime == "in+soft+12m":
        # The form's subscription (2024-01-01) and the imported consent (2024-01-15) are
        # more than 12 months old on TODAY (2025-06-15).
        lapsed = no(f"consent_expired:{cc}:consent")
        return (lapsed, OK, lapsed, third, missing)
    customer = OK if "soft" in regime else missing
    imported = missing if regime.endswith("doi") else OK
    return (OK, customer, imported, third, missing)


for _cc, _regimes in RESEARCHED.items():
    for _column, _regime in zip(COLUMNS, _regimes, strict=True):
        MARKETING[_cc, KIND_OF[_column]] = _expected_row(_cc, _column, _regime)
for _kind, _col in (("person", "b2c"), ("b2b_named", "b2b_named"),
                    ("b2b_generic", "b2b_generic")):
    # NZ: UEMA 2007, express or inferred consent (like AU).
    MARKETING["NZ", _kind] = (OK, OK, OK, no("no_consent:NZ:third_party_source"),
                              no("no_consent:NZ:consent"))


def _sole_trader(person: tuple[Reasons, ...]) -> tuple[Reasons, ...]:
    """Every row gives sole traders (natural persons in trade) the consumer regime; only
    the code names the kind. GB (PECR: individual subscribers) and BE (the generic-address
    exception is for legal persons) are the cases where this differs from b2b."""
    return tuple(tuple(r.replace(":b2c_opt_in", ":sole_trader_opt_in") for r in reasons)
                 for reasons in person)


for _country in sorted({c for c, _ in MARKETING}, key=lambda c: c or ""):
    if (_country, "sole_trader") not in MARKETING:
        MARKETING[_country, "sole_trader"] = _sole_trader(MARKETING[_country, "person"])

# Service topics (required or not), in every country: customers and confirmed
# subscribers only (legitimate interest / contract), per provenance as above.
SERVICE = (OK, OK, no("no_relationship:service"), no("no_relationship:service"),
           no("no_relationship:service"))
# A legally required notice reaches everyone (no suppressions in the table).
REQUIRED_NOTICE = (OK, OK, OK, OK, OK)


def expected(country: str | None, kind: str, provenance: str, topic_kind: str) -> Reasons:
    column = {"form": 0, "customer": 1, "import": 2, "none": 4}.get(provenance, 3)
    if topic_kind == "marketing":
        return MARKETING[country, kind][column]
    return (REQUIRED_NOTICE if topic_kind == "required_notice" else SERVICE)[column]


CASES = [
    pytest.param(country, kind, provenance, topic_kind,
                 id=f"{country or 'default'}-{kind}-{provenance}-{topic_kind}")
    for (country, kind) in MARKETING
    for provenance in PROVENANCES
    for topic_kind in TOPICS
]


@pytest.mark.parametrize(("country", "kind", "provenance", "topic_kind"), CASES)
def test_legal_table(country: str | None, kind: str, provenance: str, topic_kind: str) -> None:
    topic = TOPICS[topic_kind]
    c, subs = build(provenance, country, kind, topic)
    want = expected(country, kind, provenance, topic_kind)
    decision = decide(contact=c, topic=topic, subscriptions=subs, suppressions=[], today=TODAY,
                      jurisdictions=builtin_jurisdictions())
    assert decision.reasons == want
    assert decision.sendable is (want == OK)


def test_the_table_covers_every_required_row() -> None:
    rows = builtin_jurisdictions().rows
    required = {"default", "BE", "NL", "FR", "DE", "LU", "ES", "IT", "GB", "US", "CA", "AU",
                "NZ", *RESEARCHED}
    eu_eea = {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU",
              "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES",
              "SE", "IS", "LI", "NO"}
    assert eu_eea | {"GB", "CH", "US", "CA", "AU", "NZ"} <= set(rows)
    assert required == set(rows)
    assert {c or "default" for c, _ in MARKETING} == required


def test_every_row_cites_its_law_in_a_comment() -> None:
    text = BUILTIN_PATH.read_text(encoding="utf-8")
    for header in re.findall(r"^\[(\w+)\]$", text, flags=re.M):
        after = text.split(f"[{header}]\n", 1)[1]
        assert after.startswith("# "), header


# --- country lookup ----------------------------------------------------------------

@pytest.mark.parametrize("country", [None, "", "  ", "ZZ", "XX", "default", "DEFAULT", "UK",
                                     "BEL", "service"])
def test_unknown_country_gets_the_default_row(country: str | None) -> None:
    assert builtin_jurisdictions().for_country(country).key == "default"
    assert reasons(contact(country, source="customer", last_purchase_at="2025-05-01"),
                   NEWSLETTER) == ("no_consent:default:opt_in",)


@pytest.mark.parametrize("country", ["be", " BE ", "Be"])
def test_country_codes_are_matched_in_upper_case(country: str) -> None:
    assert builtin_jurisdictions().for_country(country).key == "BE"
    assert reasons(contact(country, kind="b2b_generic"), NEWSLETTER) == OK


def test_unknown_kind_is_treated_as_a_consumer() -> None:
    assert reasons(contact("GB", kind="robot"), NEWSLETTER) == ("no_consent:GB:b2c_opt_in",)


# --- windows -----------------------------------------------------------------------

@pytest.mark.parametrize(("facts", "want"), [
    ({"last_purchase_at": "2023-07-15"}, OK),                                 # 23 months
    ({"last_purchase_at": "2023-05-15"}, ("consent_expired:CA:implied",)),    # 25 months
    ({"last_purchase_at": "2023-06-15"}, ("consent_expired:CA:implied",)),    # exactly 2 years
    ({"last_purchase_at": "2023-06-16T09:30:00"}, OK),                        # a day inside
    ({"last_enquiry_at": "2025-01-15"}, OK),                                  # 5 months
    ({"last_enquiry_at": "2024-11-15"}, ("consent_expired:CA:implied",)),     # 7 months
    ({"last_enquiry_at": "2024-11-15", "last_purchase_at": "2024-01-01"}, OK),  # one suffices
    ({"last_purchase_at": "2026-01-01"}, ("no_consent:CA:consent",)),         # future: no proof
    ({"last_purchase_at": "not a date"}, ("no_consent:CA:consent",)),
])
def test_canada_implied_consent_windows(facts: dict[str, str], want: Reasons) -> None:
    assert reasons(contact("CA", source="cli", **facts), NEWSLETTER) == want


def test_canada_third_party_purchase_is_never_implied_consent() -> None:
    # Finding: a partner's customer is not in a business relationship with us (CASL 10(10)).
    assert reasons(contact("CA", source="partner", last_purchase_at="2022-01-01"),
                   NEWSLETTER) == ("no_consent:CA:third_party_source",)
    assert reasons(contact("CA", source="partner", last_purchase_at="2025-05-01"),
                   NEWSLETTER) == ("no_consent:CA:third_party_source",)
    assert reasons(contact("CA", source="acquired", last_enquiry_at="2025-05-01"),
                   NEWSLETTER) == ("no_consent:CA:third_party_source",)


@pytest.mark.parametrize(("facts", "want"), [
    ({"last_purchase_at": "2023-07-15"}, OK),                                 # 23 months
    ({"last_purchase_at": "2023-05-15"}, ("consent_expired:AU:inferred",)),   # 25 months
    ({"last_enquiry_at": "2025-06-01"}, ("no_consent:AU:consent",)),          # enquiry alone
])
def test_australia_inferred_consent(facts: dict[str, str], want: Reasons) -> None:
    assert reasons(contact("AU", source="cli", **facts), NEWSLETTER) == want


@pytest.mark.parametrize(("source", "facts", "want"), [
    ("customer", {"last_purchase_at": "2024-07-15"}, OK),                        # 11 months
    ("customer", {"last_purchase_at": "2024-05-15"}, ("no_consent:DE:b2c_opt_in",)),  # 13
    ("customer", {}, ("no_consent:DE:b2c_opt_in",)),           # the window needs a date
    ("form", {"last_purchase_at": "2025-01-02"}, OK),          # any contact who bought
    ("form", {"consent_at": "2025-01-02"}, ("no_consent:DE:b2c_opt_in",)),  # not confirmed
])
def test_germany_soft_opt_in_window(source: str, facts: dict[str, str], want: Reasons) -> None:
    assert reasons(contact("DE", source=source, **facts), NEWSLETTER) == want


def test_soft_opt_in_without_a_window_needs_no_purchase_date() -> None:
    assert reasons(contact("BE", source="customer"), NEWSLETTER) == OK
    assert reasons(contact("BE", source="cli", last_purchase_at="2010-01-01"), NEWSLETTER) == OK


def test_consent_dated_in_the_future_proves_nothing() -> None:
    c = contact("BE", source="import:crm", consent_at="2030-01-01")
    assert reasons(c, NEWSLETTER) == ("no_consent:BE:b2c_opt_in",)


def test_only_a_consent_basis_counts_as_a_confirmed_subscription() -> None:
    implied_row = [sub("newsletter", basis="implied")]
    assert reasons(contact("BE", source="cli"), NEWSLETTER, implied_row) == (
        "no_consent:BE:b2c_opt_in",)
    assert reasons(contact("US", source="cli"), NEWSLETTER, implied_row) == OK


# --- suppressions, objections, pauses, subscription states -------------------------

CONFIRMED = [sub("newsletter"), sub("notices"), sub("security")]


@pytest.mark.parametrize("country", ["BE", "DE", "US", "CA", "AU", None])
@pytest.mark.parametrize(("suppressions", "want"), [
    ([supp("global", "unsubscribe")], ("suppressed:global:unsubscribe",)),
    ([supp("global", "complaint")], ("suppressed:global:complaint",)),
    ([supp("global", "hard_bounce")], ("suppressed:global:hard_bounce",)),
    ([supp("topic:newsletter", "unsubscribe")], ("suppressed:topic:newsletter:unsubscribe",)),
    ([supp("domain", "staff")], ("suppressed:domain",)),
    ([supp("global", "objection")], ("suppressed:global:objection",)),
])
def test_suppression_always_wins_over_consent(
    country: str | None, suppressions: list[Suppression], want: Reasons
) -> None:
    c = contact(country, source="customer", last_purchase_at="2025-06-01",
                consent_at="2025-06-01")
    assert reasons(c, NEWSLETTER, CONFIRMED, suppressions) == want


def test_required_service_topic_survives_leaving_everything_but_not_a_complaint() -> None:
    customer = contact("BE", source="customer")
    left_all = [sub("security", status="unsubscribed")]
    assert reasons(customer, SECURITY, left_all, [supp("global", "unsubscribe")]) == OK
    assert reasons(customer, SECURITY, left_all, [supp("global", "objection")]) == OK
    assert reasons(customer, SECURITY, [], [supp("global", "complaint")]) == (
        "suppressed:global:complaint",)
    assert reasons(customer, SECURITY, [], [supp("topic:security", "unsubscribe")]) == (
        "suppressed:topic:security:unsubscribe",)
    assert reasons(customer, NOTICES, [], [supp("global", "unsubscribe")]) == (
        "suppressed:global:unsubscribe",)


def test_an_unsubscribed_row_alone_is_an_opt_out() -> None:
    row = [sub("newsletter", status="unsubscribed")]
    for country in ("US", "BE", "CA", None):
        assert reasons(contact(country), NEWSLETTER, row) == ("unsubscribed:newsletter",)
    assert reasons(contact("US"), NEWSLETTER, row,
                   [supp("topic:newsletter", "unsubscribe")]) == (
        "suppressed:topic:newsletter:unsubscribe",)
    customer = contact("BE", source="customer")
    assert reasons(customer, NOTICES, [sub("notices", status="unsubscribed")]) == (
        "unsubscribed:notices",)


def test_objection_to_third_party_data() -> None:
    objection = [supp("third_party", "objection")]
    for source in ("purchased", "partner", "acquired"):
        assert reasons(contact("US", source=source), NEWSLETTER, [], objection) == (
            "objection:third_party_data",)
        assert reasons(contact("BE", source=source), NEWSLETTER, [], objection) == (
            "objection:third_party_data",)
    assert reasons(contact("US", source="form"), NEWSLETTER, [], objection) == OK


def test_pending_confirmation_waits_in_every_regime() -> None:
    pending = [sub("newsletter", status="pending")]
    for country in ("BE", "US", "CA", None):
        assert reasons(contact(country), NEWSLETTER, pending) == (
            "pending_confirmation:newsletter",)
    assert reasons(contact("BE", source="cli"), NOTICES, [sub("notices", status="pending")]) == (
        "pending_confirmation:notices",)
    assert reasons(contact("BE"), NEWSLETTER, pending, [supp("global", "complaint")]) == (
        "suppressed:global:complaint", "pending_confirmation:newsletter")


def test_pause() -> None:
    paused = contact("US", paused_until="2025-07-01")
    assert reasons(paused, NEWSLETTER) == ("paused_until:2025-07-01",)
    assert reasons(contact("US", paused_until="2025-06-15"), NEWSLETTER) == OK  # ends today
    assert reasons(contact("US", paused_until="garbled"), NEWSLETTER) == (
        "paused_until:garbled",)
    customer = contact("BE", source="customer", paused_until="2025-07-01")
    assert reasons(customer, SECURITY) == OK  # a required topic ignores the pause
    assert reasons(customer, NOTICES) == ("paused_until:2025-07-01",)
    assert reasons(contact(None, paused_until="2025-07-01"), NEWSLETTER) == (
        "paused_until:2025-07-01", "no_consent:default:opt_in")


def test_erased_contact_is_never_mailed() -> None:
    erased = contact("US", source="customer", erased_at="2025-01-01")
    assert reasons(erased, NEWSLETTER) == ("erased",)
    assert reasons(erased, SECURITY, [], [supp("global", "erasure")]) == (
        "suppressed:global:erasure",)


def test_reasons_have_no_duplicates_and_keep_their_order() -> None:
    supps = [supp("domain", "staff"), supp("global", "hard_bounce"), supp("domain", "staff"),
             supp("global", "hard_bounce")]
    assert reasons(contact("BE"), NEWSLETTER, [], supps) == (
        "suppressed:domain", "suppressed:global:hard_bounce")


# --- the old way of calling ---------------------------------------------------------

def test_callable_without_jurisdictions() -> None:
    def old(c: Contact | None, topic: Topic | None) -> tuple[bool, Reasons]:
        d = decide(contact=c, topic=topic, subscriptions=[], suppressions=[], today=TODAY)
        return d.sendable, d.reasons

    assert old(None, NEWSLETTER) == (False, ("no_consent:default:opt_in",))
    assert old(None, NOTICES) == (False, ("unknown_contact",))
    assert old(None, None) == (True, ())
    assert old(contact("US"), NEWSLETTER) == (True, ())
    assert old(contact("BE", source="cli"), NEWSLETTER) == (False, ("no_consent:BE:b2c_opt_in",))
    assert builtin_jurisdictions() is builtin_jurisdictions()  # read once


# --- the file ----------------------------------------------------------------------

GOOD = """
[default]
b2c = "opt_in"
b2b_named = "opt_in"
b2b_generic = "opt_in"
double_opt_in = true
"""


def test_service_rule_can_cover_every_contact(tmp_path: Path) -> None:
    path = tmp_path / "j.toml"
    path.write_text(GOOD + '[service]\nlegitimate_interest = "contacts"\n', encoding="utf-8")
    table = load_jurisdictions(path)
    d = decide(contact=contact("BE", source="cli"), topic=NOTICES, subscriptions=[],
               suppressions=[], today=TODAY, jurisdictions=table)
    assert d.reasons == OK
    assert table.for_country("BE").key == "default"  # not listed in this file


@pytest.mark.parametrize(("text", "key"), [
    ('[BE]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_out"\n', "default"),
    (GOOD + '[BE]\nb2c = "maybe"\nb2b_named = "opt_in"\nb2b_generic = "opt_out"\n', "BE.b2c"),
    (GOOD + '[BE]\nb2c = "opt_in"\nb2b_named = "opt_in"\n', "BE.b2b_generic"),
    (GOOD + '[FR]\nb2c = "opt_out_role"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n',
     "FR.b2c"),
    (GOOD + '[be]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n', "be"),
    (GOOD + '[BE]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\ncolour = 1\n',
     "BE.colour"),
    (GOOD + '[DE]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n'
     'soft_opt_in = true\nsoft_opt_in_months = 0\n', "DE.soft_opt_in_months"),
    (GOOD + '[DE]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n'
     'soft_opt_in_months = 12\n', "DE.soft_opt_in_months"),
    (GOOD + '[DE]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n'
     'soft_opt_in = "yes"\n', "DE.soft_opt_in"),
    (GOOD + '[XY]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n'
     'implied_purchase_months = 24\n', "XY.implied_purchase_months"),
    (GOOD + '[CA]\nb2c = "consent"\nb2b_named = "consent"\nb2b_generic = "consent"\n'
     'implied_term = "assumed"\n', "CA.implied_term"),
    (GOOD.replace('b2b_generic = "opt_in"', 'b2b_generic = "opt_out"'), "default.b2b_generic"),
    (GOOD.replace("double_opt_in = true", "double_opt_in = false"), "default.double_opt_in"),
    (GOOD + "soft_opt_in = true\n", "default.soft_opt_in"),
    (GOOD + '[service]\nlegitimate_interest = "everyone"\n', "service.legitimate_interest"),
    (GOOD + "[service]\nbasis = 1\n", "service.basis"),
    ('BE = "opt_in"\n' + GOOD, "BE"),
    ("[default\n", "-"),
])
def test_a_bad_file_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "jurisdictions.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_jurisdictions(path)
    assert caught.value.key == key
    assert caught.value.file == str(path)
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_jurisdictions(tmp_path / "nope.toml")


# --- findings of the review against the texts (issue 13) ----------------------------

def test_nl_generic_address_is_opt_in_since_the_2021_amendment() -> None:
    # Tw 11.7 lid 1: consent of every end user; lid 3 covers only details published *for
    # receiving* advertising, which a plain info@ is not.
    assert builtin_jurisdictions().for_country("NL").b2b_generic == "opt_in"
    assert reasons(contact("NL", kind="b2b_generic", source="cli"), NEWSLETTER) == (
        "no_consent:NL:b2b_generic_opt_in",)
    assert reasons(contact("NL", kind="b2b_generic", source="customer"), NEWSLETTER) == OK


def test_nl_citation_numbers_the_lids_of_the_amended_article() -> None:
    row = builtin_jurisdictions().for_country("NL")
    assert "lid 4 (customers)" in row.citation and "lid 3" in row.citation


def test_casl_enquiry_limb_is_10_10_e() -> None:
    row = builtin_jurisdictions().for_country("CA")
    assert "10(10)(e)" in row.citation
    text = BUILTIN_PATH.read_text(encoding="utf-8")
    assert "10(10)(d))" not in text  # (d) is a written contract, not an inquiry


@pytest.mark.parametrize("source", ["purchased", "partner", "acquired"])
@pytest.mark.parametrize("country", ["BE", "NL", "FR", "DE", "LU", "ES", "IT", "GB"])
def test_a_purchase_date_on_third_party_data_is_never_a_soft_opt_in(
    country: str, source: str
) -> None:
    c = contact(country, source=source, last_purchase_at="2025-06-01")
    assert reasons(c, NEWSLETTER) == (f"no_consent:{country}:third_party_source",)
    assert c.last_purchase_at == "2025-06-01"  # kept as data


@pytest.mark.parametrize("source", ["purchased", "partner", "acquired"])
def test_a_purchase_date_on_third_party_data_is_not_a_customer_relationship(
    source: str
) -> None:
    c = contact("BE", source=source, last_purchase_at="2025-06-01")
    assert reasons(c, NOTICES) == ("no_relationship:service",)
    assert reasons(contact("AU", source=source, last_purchase_at="2025-06-01"),
                   NEWSLETTER) == ("no_consent:AU:third_party_source",)


def test_acquired_is_third_party_unless_configured(tmp_path: Path) -> None:
    assert "acquired" in builtin_jurisdictions().third_party_sources
    path = tmp_path / "j.toml"
    path.write_text(GOOD + '[BE]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = '
                    '"opt_out"\nsoft_opt_in = true\n[sources]\nthird_party = ["partner", '
                    '"purchased"]\n', encoding="utf-8")
    table = load_jurisdictions(path)
    c = contact("BE", source="acquired", last_purchase_at="2025-06-01")
    d = decide(contact=c, topic=NEWSLETTER, subscriptions=[], suppressions=[], today=TODAY,
               jurisdictions=table)
    assert d.reasons == OK


def test_gb_sole_traders_are_individual_subscribers() -> None:
    row = builtin_jurisdictions().for_country("GB")
    assert (row.b2b_named, row.b2b_generic, row.regime("sole_trader")) == (
        "opt_out", "opt_out", "opt_in")
    assert reasons(contact("GB", kind="sole_trader", source="cli"), NEWSLETTER) == (
        "no_consent:GB:sole_trader_opt_in",)
    assert reasons(contact("GB", kind="sole_trader", source="customer"), NEWSLETTER) == OK


def test_be_generic_address_exception_is_for_legal_persons_only() -> None:
    assert reasons(contact("BE", kind="b2b_generic", source="cli"), NEWSLETTER) == OK
    assert reasons(contact("BE", kind="sole_trader", source="cli"), NEWSLETTER) == (
        "no_consent:BE:sole_trader_opt_in",)


def test_a_file_without_the_sole_trader_column_treats_them_as_consumers(tmp_path: Path
                                                                        ) -> None:
    path = tmp_path / "j.toml"
    path.write_text(GOOD + '[GB]\nb2c = "opt_in"\nb2b_named = "opt_out"\n'
                    'b2b_generic = "opt_out"\n', encoding="utf-8")
    assert load_jurisdictions(path).for_country("GB").regime("sole_trader") == "opt_in"


# --- legally required notices -------------------------------------------------------

@pytest.mark.parametrize("suppression", [
    supp("global", "unsubscribe"), supp("global", "objection"), supp("global", "complaint"),
    supp("global", "staff"), supp("global", "esp"), supp("global", "partner_list"),
    supp("topic:breach", "unsubscribe"), supp("third_party", "objection"),
])
def test_required_notice_ignores_marketing_opt_outs(suppression: Suppression) -> None:
    c = contact("DE", source="purchased", paused_until="2030-01-01")
    left = [sub("breach", status="unsubscribed")]
    assert reasons(c, BREACH, left, [suppression]) == OK


@pytest.mark.parametrize(("suppression", "want"), [
    (supp("global", "hard_bounce"), "suppressed:global:hard_bounce"),
    (supp("global", "soft_bounce"), "suppressed:global:soft_bounce"),
    (supp("global", "erasure"), "suppressed:global:erasure"),
    (supp("domain", "staff"), "suppressed:domain"),
])
def test_required_notice_respects_dead_addresses(suppression: Suppression, want: str) -> None:
    assert reasons(contact("BE", source="cli"), BREACH, [], [suppression]) == (want,)


def test_required_notice_never_reaches_an_erased_or_unknown_contact() -> None:
    assert reasons(contact("US", erased_at="2025-01-01"), BREACH) == ("erased",)
    assert decide(contact=None, topic=BREACH, subscriptions=[], suppressions=[],
                  today=TODAY).reasons == ("unknown_contact",)


def test_a_marketing_topic_can_never_be_required(tmp_path: Path) -> None:
    from suppression.config import load_settings

    path = tmp_path / "m.toml"
    path.write_text('[[topics]]\nid = "promo"\nkind = "marketing"\nrequired = true\n'
                    'names = { en = "Promo" }\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key == "topics[0].required"
    assert "marketing topic can never be required" in str(caught.value)
    path.write_text('[[topics]]\nid = "breach"\nkind = "required_notice"\n'
                    'names = { en = "Breach" }\n', encoding="utf-8")
    (topic,) = load_settings(path).topics
    assert topic.kind == "required_notice" and topic.required


# --- consent lifetime ---------------------------------------------------------------

def test_germany_consent_lifetime_from_the_munich_judgment() -> None:
    assert builtin_jurisdictions().for_country("DE").consent_max_months == 18
    old = [Subscription(contact_id=1, topic="newsletter", status="subscribed",
                        basis="consent", since="2023-12-01", event_seq=1)]
    fresh = [Subscription(contact_id=1, topic="newsletter", status="subscribed",
                          basis="consent", since="2024-01-01T00:00:00", event_seq=1)]
    assert reasons(contact("DE", source="form"), NEWSLETTER, old) == (
        "consent_expired:DE:consent",)
    assert reasons(contact("DE", source="form"), NEWSLETTER, fresh) == OK
    # A customer still has the soft opt-in when the consent ran out.
    customer = contact("DE", source="customer", last_purchase_at="2025-05-01")
    assert reasons(customer, NEWSLETTER, old) == OK
    # The lifetime is for marketing consent only.
    assert reasons(contact("DE", source="form"), NOTICES, [sub("notices")]) == OK


def test_consent_lifetime_for_an_imported_consent(tmp_path: Path) -> None:
    path = tmp_path / "j.toml"
    path.write_text(GOOD + '[XY]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = '
                    '"opt_in"\nconsent_max_months = 24\n[CA]\nb2c = "consent"\nb2b_named = '
                    '"consent"\nb2b_generic = "consent"\nconsent_max_months = 24\n'
                    'implied_purchase_months = 24\n', encoding="utf-8")
    table = load_jurisdictions(path)

    def why(c: Contact) -> Reasons:
        return decide(contact=c, topic=NEWSLETTER, subscriptions=[], suppressions=[],
                      today=TODAY, jurisdictions=table).reasons

    assert why(contact("XY", source="import:crm", consent_at="2023-07-01")) == OK
    assert why(contact("XY", source="import:crm", consent_at="2023-06-01")) == (
        "consent_expired:XY:consent",)
    assert why(contact("CA", source="import:crm", consent_at="2023-06-01")) == (
        "consent_expired:CA:consent",)
    assert why(contact("CA", source="import:crm", consent_at="2023-06-01",
                       last_purchase_at="2025-01-01")) == OK  # implied consent instead


# --- FCC wireless domains -----------------------------------------------------------

def wireless(address: str, source: str = "cli", **facts: str) -> Contact:
    return Contact(id=1, address=address, addr_hash=b"h", language="en", country="US",
                   kind="person", source=source, created_at="2020-01-01",
                   **facts)  # type: ignore[arg-type]


def test_us_wireless_domain_needs_express_consent() -> None:
    assert reasons(wireless("5551234567@vtext.com"), NEWSLETTER) == (
        "no_consent:US:wireless_domain",)
    assert reasons(wireless("x@mobile.tmomail.net"), NEWSLETTER) == (
        "no_consent:US:wireless_domain",)  # a listed domain covers its subdomains
    assert reasons(wireless("x@VTEXT.COM"), NEWSLETTER) == ("no_consent:US:wireless_domain",)
    assert reasons(wireless("x@vtext.com"), NEWSLETTER, [sub("newsletter")]) == OK
    assert reasons(wireless("x@vtext.com", "import:crm", consent_at="2025-01-01"),
                   NEWSLETTER) == OK
    assert reasons(wireless("x@vtext.com", "purchased", consent_at="2025-01-01"),
                   NEWSLETTER) == ("no_consent:US:wireless_domain",)
    assert reasons(wireless("x@example.com"), NEWSLETTER) == OK
    assert reasons(wireless("x@notvtext.com"), NEWSLETTER) == OK
    assert reasons(wireless("x@vtext.com", "customer"), NOTICES) == OK  # not commercial


def test_the_shipped_wireless_list_is_marked_as_a_sample() -> None:
    table = builtin_jurisdictions()
    assert table.wireless_domains_file.endswith("fcc_wireless_domains.sample.txt")
    text = Path(table.wireless_domains_file).read_text(encoding="utf-8")
    assert text.startswith("# SAMPLE ONLY")


# --- soft opt-in per legal entity ---------------------------------------------------

def test_soft_opt_in_belongs_to_the_entity_that_made_the_sale() -> None:
    from suppression.rules import Sender

    def why(sender: Sender | None, **facts: str) -> Reasons:
        c = contact("BE", source="customer", last_purchase_at="2025-03-01", **facts)
        return decide(contact=c, topic=NEWSLETTER, subscriptions=[], suppressions=[],
                      today=TODAY, sender=sender).reasons

    several = Sender("itcare-nv", several=True)
    assert why(several, purchase_entity="itcare-nv") == OK
    assert why(several, purchase_entity="cloudcare-bv") == ("no_consent:BE:other_entity",)
    assert why(several) == ("no_consent:BE:purchase_entity_unknown",)
    assert why(Sender("itcare-nv")) == OK            # one entity: any own purchase counts
    assert why(None, purchase_entity="x") == OK      # old callers


# --- every row is sourced -----------------------------------------------------------

def test_every_row_has_a_citation_and_a_source_link() -> None:
    for key, row in builtin_jurisdictions().rows.items():
        assert row.name, key
        assert row.citation, key
        assert row.sources, key
        assert all(re.match(r"https?://\S+$", link) for link in row.sources), key
        assert row.sole_trader is not None, key  # the column is explicit in every row
        if not row.verified:
            assert len(row.note) > 20, key


@pytest.mark.parametrize(("text", "key"), [
    (GOOD + '[sources]\nthird_party = ["partner"]\n', "sources.third_party"),
    (GOOD + '[sources]\nthird_party = "partner"\n', "sources.third_party"),
    (GOOD + '[wireless_domains]\nfile = "nope.txt"\n', "wireless_domains.file"),
    (GOOD + '[wireless_domains]\n', "wireless_domains.file"),
    (GOOD + '[US]\nb2c = "opt_out"\nb2b_named = "opt_out"\nb2b_generic = "opt_out"\n'
     'wireless_domains_need_consent = true\n', "US.wireless_domains_need_consent"),
    (GOOD + '[XY]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n'
     'verified = false\n', "XY.note"),
    (GOOD + '[XY]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n'
     'sources = ["not a link"]\n', "XY.sources"),
    (GOOD + '[XY]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n'
     'sole_trader = "opt_out_role_maybe"\n', "XY.sole_trader"),
    (GOOD + '[XY]\nb2c = "opt_in"\nb2b_named = "opt_in"\nb2b_generic = "opt_in"\n'
     'consent_max_months = 0\n', "XY.consent_max_months"),
    (GOOD.replace('double_opt_in', 'sole_trader = "opt_out"\ndouble_opt_in'),
     "default.sole_trader"),
])
def test_a_bad_file_names_the_new_keys(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "jurisdictions.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_jurisdictions(path)
    assert caught.value.key == key


def test_a_bad_wireless_list_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_text("vtext.com\nnot a domain\n", encoding="utf-8")
    path = tmp_path / "j.toml"
    path.write_text(GOOD + '[wireless_domains]\nfile = "w.txt"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2"):
        load_jurisdictions(path)


def test_the_readme_table_is_generated_from_the_file() -> None:
    from suppression.jurisdictions import markdown_table

    readme = (BUILTIN_PATH.parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- jurisdictions:start -->\n", "<!-- jurisdictions:end -->"
    section = readme.split(start, 1)[1].split(end, 1)[0]
    assert section == markdown_table(builtin_jurisdictions()), (
        "README out of date: run python -m suppression.jurisdictions")


def test_the_readme_lists_every_reason_code() -> None:
    readme = (BUILTIN_PATH.parents[1] / "README.md").read_text(encoding="utf-8")
    for code in ("sole_trader_opt_in", "no_consent:<CC>:other_entity",
                 "no_consent:<CC>:purchase_entity_unknown", "no_consent:US:wireless_domain",
                 "consent_expired:<CC>:consent", "required_notice"):
        assert code in readme, code
