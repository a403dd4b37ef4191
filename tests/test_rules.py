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
TOPICS = {"marketing": NEWSLETTER, "service": NOTICES, "required": SECURITY}


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
#   none      added by hand, no basis at all
PROVENANCES = ("form", "customer", "import", "purchased", "partner", "acquired", "none")


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
    # NL: same as BE
    ("NL", "person"): (OK, OK, OK, no("no_consent:NL:third_party_source"),
                       no("no_consent:NL:b2c_opt_in")),
    ("NL", "b2b_named"): (OK, OK, OK, no("no_consent:NL:third_party_source"),
                          no("no_consent:NL:b2b_named_opt_in")),
    ("NL", "b2b_generic"): (OK, OK, OK, OK, OK),
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

# Service topics (required or not), in every country: customers and confirmed
# subscribers only (legitimate interest / contract), per provenance as above.
SERVICE = (OK, OK, no("no_relationship:service"), no("no_relationship:service"),
           no("no_relationship:service"))


def expected(country: str | None, kind: str, provenance: str, topic_kind: str) -> Reasons:
    column = {"form": 0, "customer": 1, "import": 2, "none": 4}.get(provenance, 3)
    row = MARKETING[country, kind] if topic_kind == "marketing" else SERVICE
    return row[column]


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
    required = {"default", "BE", "NL", "FR", "DE", "LU", "ES", "IT", "GB", "US", "CA", "AU"}
    assert required <= set(rows)
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


def test_canada_expired_implied_consent_for_a_third_party_contact() -> None:
    c = contact("CA", source="partner", last_purchase_at="2022-01-01")
    assert reasons(c, NEWSLETTER) == ("consent_expired:CA:implied",)


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
